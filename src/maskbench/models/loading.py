"""`load_model`: any model folder (maskbench's own, a run, a Hugging Face folder or Hub id) as a maskbench model.

It sits above both readers, `checkpoint` (maskbench folders) and `hf_import` (transformers folders), so
neither needs the other.
"""

from __future__ import annotations

import os

from torch import nn

from .checkpoint import (NATIVE_MODEL_TYPE, assemble, check_config_against_weights, model_settings, read_meta,
                         read_state, resolve_model_dir)
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
        architecture, config, head_info = model_settings(directory, meta)
        check_config_against_weights(directory, architecture, config, head_info)
        state = read_state(directory, verify)
    model = assemble(architecture, config, head_info, state, str(directory), head, num_labels, seed)
    return model.float().eval()
