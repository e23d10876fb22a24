"""Experiment specs: a base configuration, axes over any dotted key, scales, and the paper's claims.

A spec is a TOML file (or a preset name). Its `[base]` holds one table per stage section (`data`,
`tokenizer`, `prepare`, `pretrain`, `finetune`, `probe`, `heads`, `attention`); `[[axes]]` (or several
`[[series]]`, each with its own `[[series.axes]]`) vary dotted keys of that base. Axes combine as a grid;
inside one axis, `kind = "grid"` crosses its keys and `kind = "zip"` moves them together. Cells that
resolve to the same configuration in two series are the same cell (the 15% baseline of the masking-rate
series is the 80-10-10 cell of the replacement series), so they run once.

`[scales.tiny|small|paper]` adapt a preset to a budget: `set` overrides dotted keys of the base and
`axes` replaces the values of named axes (`"axis"` everywhere, or `"series/axis"` in one series). `[[claims]]` state what the paper found, as a comparison the
report evaluates on the results (never a written-in verdict).

Why dotted keys everywhere: a user can sweep any knob of any stage (`pretrain.objective.mask_rate`,
`finetune.lr`, `pretrain.model.share`) without the experiment layer knowing what the knob means.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from ..config import check_choice, config_data, config_hash, from_dict, nearest, unknown_key_error
from ..errors import ConfigError, MaskbenchError

SCALES = ("tiny", "small", "paper")
SECTIONS = ("data", "tokenizer", "prepare", "pretrain", "finetune", "probe", "heads", "attention")


@dataclass
class AxisSpec:
    """One axis: dotted key -> list of values; `zip` moves keys together, `grid` crosses them."""

    values: dict[str, list]
    kind: Literal["grid", "zip"] = "grid"
    name: str = ""
    labels: list[str] | None = None

    def __post_init__(self):
        check_choice("kind", self.kind, ("grid", "zip"))
        if not self.values:
            raise ConfigError("an axis needs at least one key in 'values'", "values")
        for key, vals in self.values.items():
            if not isinstance(vals, list) or not vals:
                raise ConfigError(f"'{key}' must map to a non-empty list of values", "values")
        lengths = {len(v) for v in self.values.values()}
        if self.kind == "zip" and len(lengths) != 1:
            detail = ", ".join(f"{k}: {len(v)}" for k, v in self.values.items())
            raise ConfigError(f"a zip axis needs lists of equal length, got {detail}", "values")
        if not self.name:
            self.name = "+".join(self.values)
        if self.labels is not None and len(self.labels) != len(self):
            raise ConfigError(f"{len(self.labels)} labels for {len(self)} points", "labels")

    def __len__(self) -> int:
        lengths = [len(v) for v in self.values.values()]
        return lengths[0] if self.kind == "zip" else math.prod(lengths)

    def points(self) -> list[tuple[str, dict[str, Any]]]:
        """(label, {dotted key: value}) for each point of the axis, in declaration order."""
        keys = list(self.values)
        if self.kind == "zip":
            combos = list(zip(*(self.values[k] for k in keys)))
        else:
            combos = list(itertools.product(*(self.values[k] for k in keys)))
        out = []
        for i, combo in enumerate(combos):
            assignment = dict(zip(keys, combo))
            label = self.labels[i] if self.labels else ", ".join(format_value(v) for v in combo)
            out.append((label, assignment))
        return out


@dataclass
class SeriesSpec:
    """A group of axes crossed together; an experiment's cells are the union over its series."""

    name: str
    axes: list[AxisSpec] = field(default_factory=list)


@dataclass
class ScaleSpec:
    """What a scale changes: dotted overrides of the base, and replacement values for named axes."""

    set: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, dict[str, list]] = field(default_factory=dict)
    description: str = ""


@dataclass
class ClaimSpec:
    """A finding of the paper, as a comparison the report evaluates on the results.

    `better` and `worse` select cells by their axis assignments (dotted key -> value); `metric` is
    `score` (mean downstream score over seeds, optionally restricted to `task`/`method`, where
    `method` may also be the thing compared: `better_method` vs `worse_method`), a pretraining summary
    value `pretrain.<name>`, the best layer's accuracy of a probe `probe.<task>`, or `parameters`. `lower_is_better` flips the direction (losses, sizes).
    `kind = "similar"` claims the two sides do not differ by more than `tolerance` (or seed noise).
    """

    text: str
    metric: str = "score"
    better: dict[str, Any] = field(default_factory=dict)
    worse: dict[str, Any] = field(default_factory=dict)
    better_method: str | None = None
    worse_method: str | None = None
    task: str | None = None
    method: str | None = None
    series: str | None = None
    lower_is_better: bool = False
    kind: Literal["greater", "similar"] = "greater"
    tolerance: float = 0.01
    scales: list[str] | None = None  # the scales whose axis values the selectors name (None: all)
    pool: bool = False  # score claims: pool every task and method; default one method (vanilla) and one task

    def __post_init__(self):
        check_choice("kind", self.kind, ("greater", "similar"))
        for i, scale in enumerate(self.scales or []):
            check_choice(f"scales[{i}]", scale, SCALES)
        if (self.better_method is None) != (self.worse_method is None):
            raise ConfigError("give both better_method and worse_method, or neither", "better_method")
        if not (self.better or self.worse or self.better_method):
            raise ConfigError("a claim compares something: set better/worse or better_method/worse_method",
                              "better")


@dataclass
class ExperimentInfo:
    name: str
    description: str = ""
    study: str = ""
    paper: str = ""
    findings: str = ""

    def __post_init__(self):
        # The name becomes the default output folder ./experiments/NAME-SCALE: one path component only.
        if not self.name or self.name in (".", "..") or any(c in self.name for c in "/\\\0"):
            raise ConfigError(f"must be one folder name (no '/', '\\', '.' or '..'), got {self.name!r}", "name")


@dataclass
class ExperimentSpec:
    """A parsed spec; `resolve(scale)` turns it into the list of cells to run."""

    experiment: ExperimentInfo
    base: dict[str, dict] = field(default_factory=dict)
    axes: list[AxisSpec] = field(default_factory=list)
    series: list[SeriesSpec] = field(default_factory=list)
    scales: dict[str, ScaleSpec] = field(default_factory=dict)
    claims: list[ClaimSpec] = field(default_factory=list)
    source: str = ""

    def __post_init__(self):
        if self.axes and self.series:
            raise ConfigError("use either [[axes]] or [[series]], not both")
        if self.axes:
            self.series = [SeriesSpec(name=self.experiment.name, axes=self.axes)]
            self.axes = []
        if not self.series:
            self.series = [SeriesSpec(name=self.experiment.name, axes=[])]
        for name in self.base:
            if name not in SECTIONS:
                raise unknown_key_error(name, SECTIONS, "base")
        names = [s.name for s in self.series]
        if len(set(names)) != len(names):
            raise ConfigError(f"series names must be unique, got {names}", "series")
        for scale in self.scales:
            check_choice("scales", scale, SCALES)

    def axis_names(self) -> list[str]:
        seen: list[str] = []
        for series in self.series:
            for axis in series.axes:
                if axis.name not in seen:
                    seen.append(axis.name)
        return seen

    def resolve(self, scale: str = "tiny", validate: Callable[[dict], None] | None = None) -> list["Cell"]:
        """All cells at `scale`, deduplicated by resolved configuration, in declaration order."""
        check_choice("scale", scale, SCALES)
        base = copy.deepcopy(self.base)
        scale_spec = self.scales.get(scale, ScaleSpec())
        for key, value in scale_spec.set.items():
            set_dotted(base, key, value, where=f"scales.{scale}.set")
        known_axes = self.axis_names() + [f"{s.name}/{a.name}" for s in self.series for a in s.axes]
        for name in scale_spec.axes:
            if name not in known_axes:
                raise unknown_key_error(name, known_axes, f"scales.{scale}.axes")
        cells: dict[str, Cell] = {}
        for series in self.series:
            axes = [_rescaled(axis, scale_spec.axes.get(f"{series.name}/{axis.name}", scale_spec.axes.get(axis.name)))
                    for axis in series.axes]
            for combo in itertools.product(*(axis.points() for axis in axes)):
                config = copy.deepcopy(base)
                labels: dict[str, str] = {}
                assignment: dict[str, Any] = {}
                for axis, (label, values) in zip(axes, combo):
                    labels[axis.name] = label
                    for key, value in values.items():
                        set_dotted(config, key, value, where=f"axis '{axis.name}'")
                        assignment[key] = value
                if validate is not None:
                    validate(config)
                cell_id = config_hash(config)
                if cell_id in cells:
                    cells[cell_id].series.append(series.name)
                    for key, value in labels.items():
                        cells[cell_id].labels.setdefault(key, value)
                    for key, value in assignment.items():
                        cells[cell_id].assignment.setdefault(key, value)
                    continue
                cells[cell_id] = Cell(id=cell_id, config=config, labels=labels, assignment=assignment,
                                      series=[series.name])
        return list(cells.values())

    def to_dict(self) -> dict:
        out = {"experiment": dataclasses.asdict(self.experiment), "base": self.base,
               "series": [{"name": s.name, "axes": [_axis_dict(a) for a in s.axes]} for s in self.series],
               "scales": {k: dataclasses.asdict(v) for k, v in self.scales.items()},
               "claims": [{k: v for k, v in dataclasses.asdict(c).items() if v is not None} for c in self.claims]}
        return out


@dataclass
class Cell:
    """One point of the experiment: its resolved configuration and where it sits on each axis."""

    id: str
    config: dict
    labels: dict[str, str]
    assignment: dict[str, Any]
    series: list[str]

    @property
    def label(self) -> str:
        return " · ".join(dict.fromkeys(str(v) for v in self.labels.values())) or "base"


def _axis_dict(axis: AxisSpec) -> dict:
    out = {"name": axis.name, "kind": axis.kind, "values": axis.values}
    if axis.labels:
        out["labels"] = axis.labels
    return out


def _rescaled(axis: AxisSpec, values: dict[str, list] | None) -> AxisSpec:
    if values is None:
        return axis
    for key in values:
        if key not in axis.values:
            raise unknown_key_error(key, list(axis.values), f"scales axis '{axis.name}'")
    merged = {**axis.values, **values}
    labels = axis.labels
    if labels is not None and axis.kind == "zip" and len(next(iter(merged.values()))) != len(labels):
        labels = None
    return AxisSpec(values=merged, kind=axis.kind, name=axis.name, labels=labels)


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "/".join(format_value(v) for v in value)
    return str(value)


def set_dotted(config: dict, key: str, value: Any, where: str = "") -> None:
    """Set `a.b.c` in a nested dict, creating tables on the way; a value in the way is an error."""
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"empty part in dotted key {key!r}", where or None)
    if parts[0] not in SECTIONS:
        hint = unknown_key_error(parts[0], SECTIONS).bare_message
        raise ConfigError(f"{key!r}: {hint}", where or None)
    node = config
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"'{'.'.join(parts[:i + 1])}' is a value, not a table, in {key!r}", where or None)
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def get_dotted(config: dict, key: str, default: Any = None) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def parse_spec(data: dict, source: str = "") -> ExperimentSpec:
    """Build an ExperimentSpec from a TOML dict, with `did you mean` for unknown keys at every level."""
    data = dict(data)
    top = {f.name for f in dataclasses.fields(ExperimentSpec) if f.name != "source"}
    for key in data:
        if key not in top:
            raise unknown_key_error(key, top)
    if "experiment" not in data:
        raise ConfigError("a spec needs an [experiment] table with at least a name", "experiment")
    info = from_dict(ExperimentInfo, data["experiment"], where="experiment")
    base = data.get("base", {})
    if not isinstance(base, dict):
        raise ConfigError("expected a table", "base")
    for name, section in base.items():
        if name not in SECTIONS:
            raise unknown_key_error(name, SECTIONS, "base")
        if not isinstance(section, dict):
            raise ConfigError("expected a table", f"base.{name}")
    axes = [from_dict(AxisSpec, a, where=f"axes[{i}]") for i, a in enumerate(_list_of_tables(data, "axes"))]
    series = []
    for i, s in enumerate(_list_of_tables(data, "series")):
        s = dict(s)
        raw_axes = s.pop("axes", [])
        item = from_dict(SeriesSpec, s, where=f"series[{i}]")
        item.axes = [from_dict(AxisSpec, a, where=f"series[{i}].axes[{j}]") for j, a in enumerate(raw_axes)]
        series.append(item)
    scales = {}
    raw_scales = data.get("scales", {})
    if not isinstance(raw_scales, dict):
        raise ConfigError("expected a table", "scales")
    for name, raw in raw_scales.items():
        if name not in SCALES:
            raise unknown_key_error(name, SCALES, "scales")
        scales[name] = from_dict(ScaleSpec, raw, where=f"scales.{name}")
    claims = [from_dict(ClaimSpec, c, where=f"claims[{i}]") for i, c in enumerate(_list_of_tables(data, "claims"))]
    return ExperimentSpec(experiment=info, base=copy.deepcopy(base), axes=axes, series=series, scales=scales,
                          claims=claims, source=source)


def _list_of_tables(data: dict, key: str) -> list[dict]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"expected an array of tables ([[{key}]])", key)
    return value


PRESET_DIR = Path(__file__).with_name("presets")


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_spec(spec: str | Path | dict, overrides: list[str] | None = None) -> ExperimentSpec:
    """A spec from a preset name, a TOML path or a dict; `overrides` (`a.b=c`) patch the base."""
    if isinstance(spec, dict):
        data, source = spec, "dict"
    else:
        path = Path(spec)
        if path.suffix != ".toml" and not path.exists():
            presets = list_presets()
            if str(spec) not in presets:
                hint = _nearest(str(spec), presets)
                tail = f"; did you mean '{hint}'?" if hint else f"; presets: {', '.join(presets)}"
                raise MaskbenchError(f"no preset or spec file named '{spec}'{tail}")
            path = PRESET_DIR / f"{spec}.toml"
        if not path.is_file():
            raise MaskbenchError(f"spec file not found: {path}")
        data, source = config_data(path), str(path)
    if overrides:  # a spec's overrides patch the base configuration its cells start from
        data = dict(data)
        data["base"] = config_data(base=data.get("base", {}), overrides=overrides)
    return parse_spec(data, source=source)


def _nearest(key: str, valid: list[str]) -> str | None:
    return nearest(key, valid)
