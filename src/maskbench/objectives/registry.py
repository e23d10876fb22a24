"""The objective registry: TOML names -> parameter dataclasses, listing and tokenizer wiring."""


from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass

from ..config import from_dict, nearest
from ..data.tokenizer import special_ids as read_special_ids
from ..errors import ConfigError
from .mlm import IGNORE_INDEX, MaskedLM
from .sentence import SENTENCE_DESCRIPTIONS
from .t5 import T5_OBJECTIVES, SpanCorruption, compute_input_and_target_lengths

# Token ids a tokenizer provides; `build_objective_for_tokenizer` fills the ones an objective declares.
WIRING_FIELDS = ("vocab_size", "mask_id", "special_ids", "sentinel_ids", "eos_id", "pad_id")

_REGISTRY: dict[str, tuple[type, dict, str]] = {MaskedLM.NAME: (MaskedLM, {}, MaskedLM.DESCRIPTION)}
for _task in ("nsp", "sop"):
    _REGISTRY[_task] = (MaskedLM, {"sentence": _task}, f"MLM + {SENTENCE_DESCRIPTIONS[_task]}")
for _cls in T5_OBJECTIVES:
    _REGISTRY[_cls.NAME] = (_cls, {}, _cls.DESCRIPTION)


@dataclass(frozen=True)
class ParameterInfo:
    name: str
    type: str
    default: typing.Any
    wiring: bool  # filled from the tokenizer rather than chosen by the user


@dataclass(frozen=True)
class ObjectiveInfo:
    name: str
    description: str
    parameters: tuple[ParameterInfo, ...]


def objective_names() -> list[str]:
    return list(_REGISTRY)


def _lookup(name: str) -> tuple[type, dict, str]:
    if name not in _REGISTRY:
        hint = nearest(str(name), _REGISTRY)
        tail = f"; did you mean '{hint}'?" if hint else f"; choose one of {', '.join(_REGISTRY)}"
        raise ConfigError(f"unknown objective '{name}'{tail}", "objective.name")
    return _REGISTRY[name]


def _type_name(tp: typing.Any) -> str:
    return str(tp).replace("typing.", "") if not isinstance(tp, type) else tp.__name__


def list_objectives() -> list[ObjectiveInfo]:
    """Every registered objective with its parameters and defaults (wiring ids marked as such)."""
    infos = []
    for name, (cls, preset, description) in _REGISTRY.items():
        hints = typing.get_type_hints(cls)
        params = []
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            if f.default is not dataclasses.MISSING:
                default = preset.get(f.name, f.default)
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = dataclasses.MISSING
            params.append(ParameterInfo(f.name, _type_name(hints[f.name]), default, f.name in cls.WIRING))
        infos.append(ObjectiveInfo(name, description, tuple(params)))
    return infos


def build_objective(name: str, **params: typing.Any):
    """The objective `name` with `params` (unknown names/parameters → ConfigError with `did you mean`)."""
    cls, preset, _ = _lookup(name)
    for key, value in preset.items():
        if key in params and params[key] != value:
            raise ConfigError(f"objective '{name}' fixes {key} = {value!r}; use name = \"mlm\" with "
                              f"{key} = {params[key]!r} instead", f"objective.{key}")
    return from_dict(cls, {**params, **preset}, where="objective")


def build_objective_for_tokenizer(name: str, tokenizer_or_special_ids: typing.Any, vocab_size: int | None = None,
                                  **params: typing.Any):
    """Like `build_objective`, with the token-id wiring taken from a tokenizer or a `SpecialIds`.

    Accepts a `tokenizers.Tokenizer` (its special ids are read with `maskbench.data.tokenizer.special_ids`)
    or any object with `pad, mask, eos, sentinels, all` attributes. `vocab_size` defaults to the tokenizer's.
    """
    ids = tokenizer_or_special_ids
    if not hasattr(ids, "sentinels"):
        if vocab_size is None and hasattr(ids, "get_vocab_size"):
            vocab_size = ids.get_vocab_size()
        ids = read_special_ids(ids)
    if vocab_size is None:
        raise ConfigError("vocab_size is needed when building an objective from special ids", "vocab_size")
    wiring = {
        "vocab_size": vocab_size,
        "mask_id": ids.mask,
        "special_ids": list(ids.all),
        "sentinel_ids": list(ids.sentinels),
        "eos_id": ids.eos,
        "pad_id": ids.pad,
    }
    cls, _, _ = _lookup(name)
    accepted = {f.name for f in dataclasses.fields(cls) if f.init}
    filled = {key: value for key, value in wiring.items() if key in accepted and key not in params}
    return build_objective(name, **filled, **params)


def objective_params(objective: typing.Any, include_wiring: bool = False) -> dict:
    """The user-chosen parameters of a built objective (for logs and resolved configs), name first."""
    out = {"name": objective.NAME if objective.NAME != "mlm" or not objective.sentence else objective.sentence}
    for f in dataclasses.fields(objective):
        if f.init and (include_wiring or f.name not in objective.WIRING):
            value = getattr(objective, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def objective_from_config(section: dict, tokenizer_or_special_ids: typing.Any = None,
                          vocab_size: int | None = None):
    """Build from a TOML `[objective]` table (`name` plus parameters)."""
    section = dict(section or {})
    if "name" not in section:
        raise ConfigError("missing the objective name, e.g. name = \"mlm\"", "objective.name")
    name = section.pop("name")
    if tokenizer_or_special_ids is None:
        return build_objective(name, **section)
    return build_objective_for_tokenizer(name, tokenizer_or_special_ids, vocab_size, **section)


__all__ = [
    "build_objective", "build_objective_for_tokenizer", "objective_from_config", "list_objectives",
    "objective_names", "objective_params", "ObjectiveInfo", "ParameterInfo", "MaskedLM", "SpanCorruption",
    "IGNORE_INDEX",
    "compute_input_and_target_lengths",
]
