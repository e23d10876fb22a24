"""Models: BERT/ALBERT encoder, T5-style encoder–decoder, heads, named sizes, checkpoints, HF interop."""

from ..lazy import lazy_exports

# Submodules import torch; they load on first use so that `maskbench --help` stays fast.
_EXPORTS = {
    "load_model": "loading", "save_model": "checkpoint",
    "EncoderConfig": "encoder", "EncoderModel": "encoder", "EncoderOutput": "encoder",
    "EncoderDecoderConfig": "encoder_decoder", "EncoderDecoderModel": "encoder_decoder",
    "EncoderForPretraining": "heads", "EncoderForSequenceClassification": "heads",
    "NAMED_SIZES": "sizes", "count_parameters": "sizes", "named_config": "sizes",
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
