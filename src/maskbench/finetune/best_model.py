"""The best state of each fine-tuning run, saved where other tools can load it.

`SEED_DIR/model/` is a Hugging Face folder (weights, config, tokenizer) that
`AutoModelForSequenceClassification` (or `AutoModelForQuestionAnswering` for SQuAD) loads, in the family
the checkpoint came from (a RoBERTa checkpoint gives a RoBERTa classifier). A model transformers cannot
express (pre-LN, partial layer sharing) or a machine without transformers gets a maskbench model folder
instead, which every maskbench command reads; `best.json` says which (`model_format`).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError
from ..io import write_text
from ..models.checkpoint import model_config_json, save_model
from ..models.hf import export_model

MODEL_DIR = "model"


def save_best_model(model, folder: Path, checkpoint: str, tokenizer_json: str | None) -> dict:
    """Write `model` (eval-ready, plain parameters) to `folder`; returns best.json's `model_format` ("hf" or
    "maskbench") and, for the latter, `model_note` (why transformers could not take it)."""
    try:
        origin = model_config_json(checkpoint) if not checkpoint.startswith("random:") else {}
    except CheckpointError:
        origin = {}
    try:
        export_model(model, folder, tokenizer_json=tokenizer_json, origin=origin)
        return {"model_format": "hf"}
    except CheckpointError as e:  # not expressible in transformers, or transformers is not installed
        save_model(model, folder)
        if tokenizer_json is not None:
            write_text(Path(folder) / "tokenizer.json", tokenizer_json)
        return {"model_format": "maskbench", "model_note": str(e)}
