"""Model folders: `model.safetensors` + `config.json` ({"architecture", "config", "head", "weights_sha256"}).

The file names are Hugging Face's, so `config.json` also carries `"model_type": "maskbench"`: transformers
then refuses the folder with a message naming maskbench ("model type `maskbench` ... does not recognize"),
instead of failing later on weights it cannot place. `maskbench export --to hf` writes a real HF folder.

`load_model` accepts a model folder, a pretraining run folder (its final `model/` or else the newest
`checkpoints/step-*/`) or a Hugging Face folder (imported on the fly), and can swap the head: a
pretrained encoder becomes a classifier (`head="classification", num_labels=N`) with the new head
initialised from a seed. Names and shapes are checked before anything is copied and the first mismatch
is reported in one line; a checksum catches bit rot that a well-formed file would hide. No pickle.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from ..config import from_dict
from ..errors import CheckpointError, ConfigError
from ..io import read_json, save_safetensors, sha256_file, write_json
from .discriminator import EncoderForTokenDetection
from .encoder import EncoderConfig, EncoderModel
from .encoder_decoder import EncoderDecoderConfig, EncoderDecoderModel
from .heads import EncoderForPretraining, EncoderForSequenceClassification
from .hub import fetch, looks_like_hub_id

MODEL_KIND = "model folder"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
HEADS = ("encoder", "pretraining", "classification")
#: The `model_type` of a native folder: not one transformers knows, so its Auto classes refuse it clearly.
NATIVE_MODEL_TYPE = "maskbench"


def describe(model: nn.Module) -> dict:
    """The `config.json` content for a model: architecture name, its config and its head."""
    if isinstance(model, EncoderForPretraining):
        head = {"type": "pretraining", "sentence_task": model.sentence_task}
    elif isinstance(model, EncoderForTokenDetection):
        head = {"type": "token_detection"}
    elif isinstance(model, EncoderForSequenceClassification):
        head = {"type": "classification", "num_labels": model.num_labels}
    elif isinstance(model, (EncoderModel, EncoderDecoderModel)):
        head = None
    else:
        raise CheckpointError(f"cannot save a {type(model).__name__}: save_model takes a maskbench model")
    return {"model_type": NATIVE_MODEL_TYPE, "architecture": type(model).__name__,
            "config": dataclasses.asdict(model.config), "head": head,
            "note": "a maskbench model folder, not a Hugging Face one: `maskbench export --to hf` converts it"}


def save_model(model: nn.Module, directory: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write `model.safetensors` then `config.json` (each atomically) into `directory`; returns it.

    Other files already in the folder (optimizer state, tokenizer) are left alone, so the trainer can
    save a model into a checkpoint folder it is assembling.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = describe(model)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_safetensors(state, directory / WEIGHTS, metadata={"format": "pt", "architecture": meta["architecture"]})
    meta["weights_sha256"] = sha256_file(directory / WEIGHTS)
    if extra:
        meta.update(extra)
    write_json(directory / CONFIG, meta)
    return directory


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """The folder that holds the weights: the path itself, RUN/model, RUN's newest checkpoint, or the cached
    snapshot of a Hugging Face Hub id (`models/hub.py`)."""
    text, path = str(path), Path(path)
    if path.is_file():
        path = path.parent
    if not path.exists():
        if not looks_like_hub_id(text):
            raise CheckpointError(f"model path not found: {path}")
        path = fetch(text)
    if (path / CONFIG).is_file():
        return path
    if (path / "model" / CONFIG).is_file():
        return path / "model"
    steps = [p for p in (path / "checkpoints").glob("step-*")
             if p.name[5:].isdigit() and (p / CONFIG).is_file()] if (path / "checkpoints").is_dir() else []
    if steps:
        return max(steps, key=lambda p: int(p.name[5:]))  # numeric: step-10000000 is after step-9999999
    raise CheckpointError(f"{path} holds no model: expected {CONFIG} + {WEIGHTS}, a run's model/ or checkpoints/step-*/")


def read_state(directory: Path, verify: bool = True) -> dict[str, torch.Tensor]:
    """Tensors of `directory/model.safetensors`, with the checksum in config.json verified."""
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing; the folder is not a complete model")
    if verify:
        expected = read_meta(directory).get("weights_sha256")
        if expected and sha256_file(weights) != expected:
            raise CheckpointError(f"{weights} is corrupted (checksum differs from config.json); re-export or use another checkpoint")
    try:
        return load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights} is not a readable safetensors file ({str(e).splitlines()[0]})") from None


def check_config_against_weights(directory: Path, architecture: str, config: dict, head: dict | None) -> None:
    """Compare the shapes config.json implies with the safetensors header before anything is allocated.

    The model is built on the meta device (shapes only, no memory), so a config.json that says
    `hidden_size = 1e7` is a one-line error instead of an 80 GB allocation.
    """
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing; the folder is not a complete model")
    try:
        with safe_open(str(weights), framework="pt") as f:
            found = {name: torch.empty(f.get_slice(name).get_shape(), device="meta") for name in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights} is not a readable safetensors file ({str(e).splitlines()[0]})") from None
    with torch.device("meta"):
        expected = build(architecture, config, head).state_dict()
    check_state(expected, found, f"{directory / CONFIG} does not describe {WEIGHTS}")


def read_meta(directory: Path) -> dict:
    try:
        meta = read_json(directory / CONFIG)
    except Exception as e:
        raise CheckpointError(f"cannot read {directory / CONFIG}: {e}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{directory / CONFIG} is not a JSON object")
    return meta


def model_settings(directory: Path, meta: dict | None = None) -> tuple[str, dict, dict | None]:
    """(architecture, config, head) of a maskbench model folder; one line when config.json is not one's."""
    meta = read_meta(directory) if meta is None else meta
    for key in ("architecture", "config"):
        if key not in meta:
            raise CheckpointError(f"{directory / CONFIG} lacks '{key}'; it is not a maskbench model folder")
    if not isinstance(meta["config"], dict):
        raise CheckpointError(f"{directory / CONFIG}: 'config' is not a table of model settings")
    return meta["architecture"], meta["config"], meta.get("head")


def check_state(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], where: str,
                allow_extra: bool = False) -> None:
    """Raise CheckpointError naming the first missing, unexpected or mis-shaped weight."""
    for name, tensor in expected.items():
        if name not in found:
            raise CheckpointError(f"{where}: weight '{name}' is missing ({len(found)} weights in file)")
        if tuple(found[name].shape) != tuple(tensor.shape):
            raise CheckpointError(f"{where}: weight '{name}' has shape {list(found[name].shape)}, "
                                  f"the model expects {list(tensor.shape)}")
    if not allow_extra:
        for name in found:
            if name not in expected:
                raise CheckpointError(f"{where}: unexpected weight '{name}' (architecture or config mismatch)")


def build(architecture: str, config: dict, head: dict | None,
          generator: torch.Generator | None = None) -> nn.Module:
    """A freshly initialised model from the three config.json fields."""
    try:
        if architecture == "EncoderDecoderModel":
            return EncoderDecoderModel(from_dict(EncoderDecoderConfig, config), generator)
        enc = from_dict(EncoderConfig, config)
    except ConfigError as e:
        raise CheckpointError(f"invalid model config: {e}") from None
    head = head or {}
    if architecture == "EncoderModel":
        return EncoderModel(enc, generator)
    if architecture == "EncoderForPretraining":
        return EncoderForPretraining(enc, head.get("sentence_task"), generator)
    if architecture == "EncoderForSequenceClassification":
        return EncoderForSequenceClassification(enc, int(head.get("num_labels", 2)), generator)
    if architecture == "EncoderForTokenDetection":
        return EncoderForTokenDetection(enc, generator)
    raise CheckpointError(f"unknown architecture '{architecture}' in config.json")


def _encoder_part(state: dict[str, torch.Tensor], architecture: str) -> dict[str, torch.Tensor]:
    if architecture == "EncoderModel":
        return dict(state)
    return {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}


def assemble(architecture: str, config: dict, head_info: dict | None, state: dict[str, torch.Tensor],
             where: str, head: str | None = None, num_labels: int | None = None, seed: int = 0) -> nn.Module:
    """Build the requested model and fill it from `state` (saved as `architecture`), checking names/shapes."""
    if head is not None and head not in HEADS:
        raise CheckpointError(f"unknown head '{head}'; choose one of {', '.join(HEADS)}")
    if architecture == "EncoderDecoderModel" and head not in (None,):
        raise CheckpointError(f"{where} is an encoder-decoder model; head '{head}' applies to encoders only")
    generator = torch.Generator().manual_seed(seed)
    head_info = head_info or {}
    saved_head = {"EncoderModel": "encoder", "EncoderForPretraining": "pretraining",
                  "EncoderForSequenceClassification": "classification"}.get(architecture)
    if head is None or (head == saved_head and (head != "classification" or num_labels in (None, head_info.get("num_labels")))):
        model = build(architecture, config, head_info, generator)
        expected = model.state_dict()
        check_state(expected, state, where)
        model.load_state_dict(state, strict=True)
        return model
    if head == "classification" and num_labels is None:
        raise CheckpointError("head='classification' needs num_labels")
    target = {"encoder": "EncoderModel", "pretraining": "EncoderForPretraining",
              "classification": "EncoderForSequenceClassification"}[head]
    target_head = {"num_labels": num_labels} if head == "classification" else \
        {"sentence_task": head_info.get("sentence_task")} if head == "pretraining" else None
    model = build(target, config, target_head, generator)
    encoder_state = _encoder_part(state, architecture)
    encoder = model if target == "EncoderModel" else model.encoder
    check_state(encoder.state_dict(), encoder_state, where)
    encoder.load_state_dict(encoder_state, strict=True)
    if target == "EncoderForPretraining":  # reuse the saved MLM / sentence heads where they exist
        rest = {k: v for k, v in state.items() if not k.startswith("encoder.")}
        own = {k: v for k, v in model.state_dict().items() if not k.startswith("encoder.")}
        usable = {k: v for k, v in rest.items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(usable, strict=False)
    return model


def model_config_json(path: str | os.PathLike) -> dict:
    """The config.json of a model folder (resolved like `load_model`), for tools that only need shapes."""
    return read_meta(resolve_model_dir(path))
