"""Models: BERT/ALBERT encoder, T5-style encoder–decoder, heads, named sizes, checkpoints, HF interop."""

# Submodules import torch; they load on first use so that `maskbench --help` stays fast.
_EXPORTS = {
    "load_model": "checkpoint", "save_model": "checkpoint",
    "EncoderConfig": "encoder", "EncoderModel": "encoder", "EncoderOutput": "encoder",
    "EncoderDecoderConfig": "encoder_decoder", "EncoderDecoderModel": "encoder_decoder",
    "EncoderForPretraining": "heads", "EncoderForSequenceClassification": "heads",
    "NAMED_SIZES": "sizes", "count_parameters": "sizes", "named_config": "sizes",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'maskbench.models' has no attribute {name!r}")
