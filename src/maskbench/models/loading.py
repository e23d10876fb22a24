"""`load_model`: any model folder (maskbench's own, a run, a Hugging Face folder or Hub id) as a maskbench model.

It sits above both readers, `checkpoint` (maskbench folders) and `hf_import` (transformers folders), so
neither needs the other.
"""

from __future__ import annotations

import os

from torch import nn

from ..errors import CheckpointError
from .checkpoint import (CONFIG, NATIVE_MODEL_TYPE, read_meta, assemble, check_config_against_weights, read_state,
                         resolve_model_dir)
from .hf_import import import_hf_state


def load_model(path: str | os.PathLike, head: str | None = None, num_labels: int | None = None,
               seed: int = 0, verify: bool = True) -> nn.Module:
    """Load a maskbench model folder, a pretraining run folder or a Hugging Face folder.

    `head`: None keeps the saved architecture; "encoder" returns the bare `EncoderModel`; "pretraining"
    an `EncoderForPretraining`; "classification" an `EncoderForSequenceClassification` with `num_labels`
    outputs (a new classifier initialised from `seed` unless the saved one has the same shape).
    The model is returned in eval mode on the CPU in float32.
    """
    directory = resolve_model_dir(path)
    meta = read_meta(directory)
    if meta.get("model_type", NATIVE_MODEL_TYPE) != NATIVE_MODEL_TYPE and "architecture" not in meta:
        architecture, config, head_info, state = import_hf_state(directory)
    else:
        for key in ("architecture", "config"):
            if key not in meta:
                raise CheckpointError(f"{directory / CONFIG} lacks '{key}'; it is not a maskbench model folder")
        architecture, config, head_info = meta["architecture"], meta["config"], meta.get("head")
        if not isinstance(config, dict):
            raise CheckpointError(f"{directory / CONFIG}: 'config' is not a table of model settings")
        check_config_against_weights(directory, architecture, config, head_info)
        state = read_state(directory, verify)
    model = assemble(architecture, config, head_info, state, str(directory), head, num_labels, seed)
    return model.float().eval()
