"""maskbench's real stages, as the experiment runner sees them: prepare → pretrain → fine-tune / probe / heads.

Each stage is a function of a `StageContext` that calls the public API of its package in-process and
returns a small JSON result for the report. The sections of a cell's configuration:

    [data]       source = "synth" | "files"; the corpus (synthetic size and seed, or input paths)
    [tokenizer]  kind, vocab_size
    [prepare]    a data.shards.PrepareConfig (seq_len, val_fraction, ...)
    [pretrain]   a train.PretrainConfig (its data paths are filled in), plus `enabled = false` for a
                 not-pretrained baseline (the same model, randomly initialised), or `model_path` to use a
                 model pretrained elsewhere (a maskbench run/model folder or a Hugging Face folder)
    [finetune]   a finetune.FinetuneConfig per task × method × seed: `tasks`, `methods`, `seeds` are
                 expanded by the runner; `data` is a GLUE-layout folder for GLUE task names
    [probe]      enabled, tasks (layer-wise linear probes)
    [heads]      enabled, samples (head-pattern classification)
    [attention]  enabled, text, pair (a self-contained attention view)
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import check_choice, check_range, from_dict, to_dict
from ..data.shards import PrepareConfig, Shards, prepare
from ..data.sources import iter_sentences, resolve_inputs
from ..data.synth import PROFILES, generate_corpus, write_tasks
from ..data.tokenizer import load_tokenizer, special_ids, train_tokenizer
from ..errors import CheckpointError, ConfigError, MaskbenchError
from ..finetune import finetune
from ..finetune.config import FinetuneConfig
from ..inspect import HeadThresholds, ProbeConfig, attention, probe, write_html
from ..inspect.heads import head_patterns, plot_heads
from ..inspect.probes import plot_probes
from ..io import read_json, write_json, write_text
from ..models import load_model, save_model
from ..models.checkpoint import NATIVE_MODEL_TYPE, model_settings, read_meta, resolve_model_dir
from ..models.encoder import EncoderConfig
from ..models.encoder_decoder import EncoderDecoderConfig
from ..models.sizes import count_parameters, named_config
from ..objectives import build_objective_for_tokenizer
from ..objectives.pmi import build_pmi_vocabulary, write_pmi_vocabulary
from ..runtime import progress_enabled
from ..train import pretrain
from ..train.config import PretrainConfig
from ..train.loop import build_model
from ..train.sentence_pairs import sentence_pair_accuracy
from .cells import StageContext, StageDef

SYNTH_TASKS_DIR = "tasks"


@dataclass
class DataSection:
    """The pretraining corpus: the built-in synthetic language or text files (any reader of `sources`).

    The synthetic GLUE-format tasks (`synth-sentiment`, `synth-agreement`, `synth-order`) are written from
    the same generator whatever the corpus, so fine-tuning and probes always have a built-in task.
    """

    source: Literal["synth", "files", "none"] = "synth"  # none: no corpus (pretrain.checkpoint gives the model)
    inputs: list[str] = field(default_factory=list)
    synth_tokens: int = 200_000
    synth_profile: str = "standard"  # data.synth.PROFILES: "compact" and "demo" are languages a tiny model learns
    seed: int = 0
    tasks: list[str] = field(default_factory=lambda: ["synth-sentiment", "synth-agreement", "synth-order"])
    task_train: int = 2000
    task_dev: int = 500
    samples: int = 400  # sentences kept for head patterns, probes and the attention view

    def __post_init__(self):
        check_range("synth_tokens", self.synth_tokens, 1000)
        check_choice("synth_profile", self.synth_profile, tuple(PROFILES))
        check_range("task_train", self.task_train, 2)
        check_range("task_dev", self.task_dev, 2)
        check_range("samples", self.samples, 1)


@dataclass
class TokenizerSection:
    kind: str = "wordpiece"
    vocab_size: int = 4000
    lowercase: bool = True

    def __post_init__(self):
        check_choice("kind", self.kind, ("wordpiece", "unigram", "bpe"))
        check_range("vocab_size", self.vocab_size, 200)


@dataclass
class ProbeSection:
    enabled: bool = False
    tasks: list[str] = field(default_factory=lambda: ["word_class"])
    options: dict[str, Any] = field(default_factory=dict)  # passed to inspect.ProbeConfig


@dataclass
class HeadsSection:
    enabled: bool = False
    samples: int = 200
    options: dict[str, Any] = field(default_factory=dict)  # thresholds (inspect.HeadThresholds)

    def __post_init__(self):
        check_range("samples", self.samples, 1)


@dataclass
class AttentionSection:
    enabled: bool = False
    text: str = ""  # empty: the first sample sentence of the corpus
    pair: str | None = None
    views: str = "all"


OWN_FINETUNE_KEYS = ("tasks", "methods", "seeds")
OWN_PRETRAIN_KEYS = ("enabled", "model_path")


def _section(config: dict, name: str) -> dict:
    value = config.get(name, {})
    return value if isinstance(value, dict) else {}


def validate_config(config: dict) -> dict:
    """Check a resolved cell configuration against every stage's dataclass (`did you mean` included);
    returns the sections with every default filled in (what `experiment run --dry-run` prints)."""
    resolved = {"data": to_dict(from_dict(DataSection, _section(config, "data"), where="data")),
                "tokenizer": to_dict(from_dict(TokenizerSection, _section(config, "tokenizer"), where="tokenizer")),
                "prepare": to_dict(from_dict(PrepareConfig, _section(config, "prepare"), where="prepare"))}
    pre = {k: v for k, v in _section(config, "pretrain").items() if k not in OWN_PRETRAIN_KEYS}
    pretrain_config = from_dict(PretrainConfig, pre, where="pretrain")
    try:
        _check_model_and_objective(pretrain_config)
    except ConfigError as e:
        raise _under(e, "pretrain") from None
    enabled = _section(config, "pretrain").get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"expected true or false, got {enabled!r}", "pretrain.enabled")
    model_path = _section(config, "pretrain").get("model_path")
    if model_path is not None and not isinstance(model_path, str):
        raise ConfigError(f"expected a path to a model folder, got {model_path!r}", "pretrain.model_path")
    if model_path:
        _check_model_folder(model_path)
    if _section(config, "data").get("source") == "none" and not model_path:
        raise ConfigError("data.source = \"none\" has no corpus to pretrain on; set pretrain.model_path to a "
                          "model folder (maskbench or Hugging Face)", "pretrain.model_path")
    ft = _section(config, "finetune")
    for key in OWN_FINETUNE_KEYS:
        if key in ft and not isinstance(ft[key], list):
            raise ConfigError(f"expected a list, got {ft[key]!r}", f"finetune.{key}")
    rest = {k: v for k, v in ft.items() if k not in OWN_FINETUNE_KEYS}
    finetune_config = from_dict(FinetuneConfig, {**rest, "methods": ft.get("methods", ["vanilla"]),
                                                 "seeds": ft.get("seeds", [0])}, where="finetune")
    own = {k: v for k, v in _section(config, "pretrain").items() if k in OWN_PRETRAIN_KEYS}
    resolved["pretrain"] = {**own, **to_dict(pretrain_config)}
    resolved["finetune"] = {**{k: ft[k] for k in OWN_FINETUNE_KEYS if k in ft}, **to_dict(finetune_config)}
    probe = from_dict(ProbeSection, _section(config, "probe"), where="probe")
    heads = from_dict(HeadsSection, _section(config, "heads"), where="heads")
    resolved["probe"], resolved["heads"] = to_dict(probe), to_dict(heads)
    if probe.enabled or heads.enabled:
        for task in probe.tasks:
            from_dict(ProbeConfig, {**probe.options, "task": task}, where="probe.options")
        from_dict(HeadThresholds, heads.options, where="heads.options")
    resolved["attention"] = to_dict(from_dict(AttentionSection, _section(config, "attention"), where="attention"))
    return resolved


def _under(error: ConfigError, prefix: str) -> ConfigError:
    """The error with its key, or the keys quoted in an `unknown key` message, placed under `prefix`."""
    if error.key:
        return error.under(prefix)
    message = re.sub(r"(unknown key |did you mean )'([^']+)'", lambda m: f"{m.group(1)}'{prefix}.{m.group(2)}'",
                     error.bare_message)
    return ConfigError(message)


@dataclass(frozen=True)
class _StandardIds:
    """The special ids every maskbench tokenizer has (data.tokenizer.SPECIAL_TOKENS), for checking
    objective tables before any tokenizer exists."""

    pad: int = 0
    unk: int = 1
    cls: int = 2
    sep: int = 3
    mask: int = 4
    sentinels: tuple[int, ...] = tuple(range(5, 105))

    @property
    def eos(self) -> int:
        return self.sep

    @property
    def all(self) -> list[int]:
        return [0, 1, 2, 3, 4, *self.sentinels]


def _check_model_and_objective(config) -> None:
    """Catch a misspelled model field or objective parameter when the spec is read, not minutes later."""
    table = dict(config.model)
    base = named_config(table.pop("size", "bert-tiny"))
    from_dict(type(base), {**dataclasses.asdict(base), **table}, where="model")
    params = dict(config.objective)
    name = params.pop("name")
    if params.get("unit") == "pmi":  # its n-gram vocabulary is built from the shards at run time
        params.pop("pmi_path", None)
        params["unit"] = "token"
    build_objective_for_tokenizer(name, _StandardIds(), vocab_size=30000, **params)


# --------------------------------------------------------------------------------------------- prepare

def prepare_stage(ctx: StageContext) -> dict:
    """Corpus (synthetic or files) → tokenizer.json → shards, plus the synthetic tasks and sample sentences."""
    data = from_dict(DataSection, _section(ctx.config, "data"), where="data")
    tok = from_dict(TokenizerSection, _section(ctx.config, "tokenizer"), where="tokenizer")
    prep = from_dict(PrepareConfig, _section(ctx.config, "prepare"), where="prepare")
    out = ctx.out
    if data.source == "synth":
        inputs = [str(generate_corpus(out / "corpus", tokens=data.synth_tokens, seed=data.seed,
                                      profile=data.synth_profile))]
    elif data.source == "files":
        if not data.inputs:
            raise ConfigError("data.source = \"files\" needs data.inputs (files, folders or globs); "
                              "e.g. --set 'data.inputs=[\"corpus/\"]'", "data.inputs")
        inputs = [str(Path(p).expanduser()) for p in data.inputs]
    else:
        inputs = []
    tasks: list[str] = []
    if data.tasks:
        written = write_tasks(out / SYNTH_TASKS_DIR, seed=data.seed, train=data.task_train, dev=data.task_dev,
                              test=data.task_dev, tasks=tuple(data.tasks), profile=data.synth_profile)
        tasks = sorted(written)
    if not inputs:  # a given checkpoint brings its own tokenizer; keep task sentences as samples
        samples = []
        for task in tasks:
            lines = (out / SYNTH_TASKS_DIR / task / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
            samples += [line.split("\t")[0] for line in lines[: data.samples]]
        write_text(out / "samples.txt", "\n".join(samples[: data.samples]) + "\n")
        return {"tasks": tasks, "samples": "samples.txt"}
    tokenizer_path = out / "tokenizer.json"
    train_tokenizer(inputs, kind=tok.kind, vocab_size=tok.vocab_size, out_path=tokenizer_path,
                    lowercase=tok.lowercase)
    manifest = prepare(inputs, tokenizer_path, out / "shards", config=prep, overwrite=True, progress=progress_enabled())
    samples = []
    for sentence in iter_sentences(resolve_inputs(inputs), sentences=prep.sentences):
        if len(sentence.split()) >= 4:
            samples.append(sentence)
        if len(samples) >= data.samples:
            break
    write_text(out / "samples.txt", "\n".join(samples) + "\n")
    counts = {k: v for k, v in manifest.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    splits = manifest.get("splits", {})
    return {"tokenizer": "tokenizer.json", "shards": "shards", "tasks": tasks, "samples": "samples.txt",
            "vocab_size": _vocab_size(tokenizer_path), "manifest": counts,
            "tokens": {name: s.get("tokens") for name, s in splits.items()} if isinstance(splits, dict) else None}


def _vocab_size(tokenizer_path: Path) -> int:
    return load_tokenizer(tokenizer_path).get_vocab_size(with_added_tokens=True)


# --------------------------------------------------------------------------------------------- pretrain

def pretrain_key(config: dict) -> dict:
    """A not-pretrained baseline depends only on the model and the seed, not on the objective or budget."""
    section = _section(config, "pretrain")
    if section.get("model_path"):
        return {"pretrain": {"model_path": section["model_path"]}}
    if section.get("enabled", True):
        return {"pretrain": section}
    return {"pretrain": {"enabled": False, "model": section.get("model", {}), "seed": section.get("seed", 0)}}


def _pretrain_config(ctx: StageContext):
    section = copy.deepcopy(_section(ctx.config, "pretrain"))
    section.pop("enabled", None)
    if not progress_enabled():
        section.setdefault("log", {})["progress"] = False
    data = section.setdefault("data", {})
    data["shards"] = str(ctx.parents["prepare"] / "shards")
    data["tokenizer"] = str(ctx.parents["prepare"] / "tokenizer.json")
    objective = section.get("objective", {})
    if objective.get("unit") == "pmi" and objective.get("pmi_path") in (None, "", "auto"):
        objective["pmi_path"] = str(_pmi_vocabulary(ctx))
    return from_dict(PretrainConfig, section, where="pretrain")


def _pmi_vocabulary(ctx: StageContext) -> Path:
    """PMI-masking's n-gram vocabulary (Levine et al. 2021), built from the cell's own training shards."""
    path = ctx.out / "pmi.json"
    if not path.is_file():
        write_pmi_vocabulary(build_pmi_vocabulary(ctx.parents["prepare"] / "shards", progress=progress_enabled()), path)
    return path


def pretrain_stage(ctx: StageContext) -> dict:
    """Pretrain (resuming from the stage folder's checkpoints after an interruption) or, for a baseline,
    save the same model randomly initialised; either way `model/` is what fine-tuning starts from."""
    model_path = _section(ctx.config, "pretrain").get("model_path")
    if model_path:
        return _external_model(model_path)
    config = _pretrain_config(ctx)
    tokenizer = ctx.parents["prepare"] / "tokenizer.json"
    if not _section(ctx.config, "pretrain").get("enabled", True):
        return _random_model(config, tokenizer, ctx.out / "model")

    run = ctx.out / "run"
    summary = pretrain(config, run, resume=ctx.resume and run.exists())
    result = {"pretrained": True, "model": "run/model", "metrics_file": "run/metrics.jsonl",
              **_final_metrics(summary), "summary": _jsonable(summary)}
    result.update(_parameter_counts(run / "model"))
    result.update(_sentence_pairs(run / "model", config))
    return result


def _sentence_pairs(model_dir: Path, config) -> dict:
    """ALBERT's intrinsic table: the sentence head scored on held-out NSP pairs and SOP pairs."""
    model = load_model(model_dir)
    seq_len = config.data.seq_len or Shards.open(config.data.shards).manifest.get("seq_len") or 128
    scores = sentence_pair_accuracy(model, config.data.shards, int(seq_len), batch_size=config.batch.size,
                                    batches=config.eval.batches, seed=config.eval.seed)
    return {f"val_{task}_pairs_accuracy": value for task, value in scores.items() if value is not None}


def _check_model_folder(model_path: str) -> None:
    """A local maskbench model folder whose config.json is damaged is refused before any stage runs.

    Hub ids and missing paths are left to the stage (a download may make them exist); a Hugging Face
    folder's config.json is read by the importer.
    """
    path = Path(model_path).expanduser()
    if not path.exists():
        return
    try:
        directory = resolve_model_dir(path)
        meta = read_meta(directory)
        if "architecture" in meta or meta.get("model_type", NATIVE_MODEL_TYPE) == NATIVE_MODEL_TYPE:
            _parameter_counts(directory)
    except CheckpointError as e:
        raise ConfigError(str(e), "pretrain.model_path") from None


def _external_model(model_path: str) -> dict:
    """A model that was pretrained elsewhere (a maskbench run or model folder, a Hugging Face folder)."""
    path = Path(model_path).expanduser()
    if not path.exists():
        raise ConfigError(f"model folder not found: {path}; download or import it first (see docs/experiments.md) "
                          "or --set pretrain.model_path=PATH", "pretrain.model_path")
    model_dir = resolve_model_dir(path).resolve()
    result: dict[str, Any] = {"pretrained": True, "external": True, "model": str(model_dir)}
    try:
        result.update(_parameter_counts(model_dir))
    except CheckpointError:  # a Hugging Face folder (or a damaged one, which load_model names): counted when loaded

        model = load_model(model_dir, head="encoder")
        result["parameters"] = int(sum(p.numel() for p in model.parameters()))
    return result


def _tokenizer_of(ctx: StageContext) -> Path:
    """The tokenizer of the cell: the prepared one, or the one beside an external checkpoint."""
    if ctx.parent_results["pretrain"].get("external"):
        return Path(ctx.parent_results["pretrain"]["model"])
    return ctx.parents["prepare"] / "tokenizer.json"


def _random_model(config, tokenizer: Path, out: Path) -> dict:
    """The baseline: the model pretraining would start from (same table, same seed), saved untrained."""
    tok = load_tokenizer(tokenizer)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    seq2seq = isinstance(named_config(config.model.get("size", "bert-tiny")), EncoderDecoderConfig)
    model = build_model(config.model, vocab, None, seq2seq=seq2seq, seed=config.seed, special=special_ids(tok))
    save_model(model, out)
    shutil.copyfile(tokenizer, out / "tokenizer.json")
    return {"pretrained": False, "model": "model", **_parameter_counts(out)}


def _parameter_counts(model_dir: Path) -> dict:
    model_dir = resolve_model_dir(model_dir)
    architecture, config, _head = model_settings(model_dir)
    cls = EncoderDecoderConfig if architecture == "EncoderDecoderModel" else EncoderConfig
    try:
        count = count_parameters(from_dict(cls, config))
    except ConfigError as e:
        raise CheckpointError(f"{model_dir / 'config.json'}: {e}") from None
    return {"parameters": int(count.total), "parameters_embedding": int(count.embedding),
            "parameters_non_embedding": int(count.total - count.embedding)}


#: The trainer's evaluation names → the report's column names.
EVAL_NAMES = {"loss": "val_loss", "mlm_accuracy": "val_accuracy", "target_accuracy": "val_accuracy",
              "ref_mlm_loss": "val_loss_ref", "ref_mlm_accuracy": "val_accuracy_ref",
              "sentence_accuracy": "val_sentence_accuracy"}


def _final_metrics(summary: dict) -> dict:
    """The last validation scores of the run and its speed, under the report's names."""
    out: dict[str, Any] = {}
    for key, name in EVAL_NAMES.items():
        value = (summary.get("eval") or {}).get(key)
        if isinstance(value, (int, float)):
            out.setdefault(name, value)
    for key in ("steps", "tokens_per_s", "train_seconds", "seconds_per_step", "targets_per_example", "repetitions",
                "data_tokens"):
        if isinstance(summary.get(key), (int, float)):
            out[key] = summary[key]
    train_loss = (summary.get("final") or {}).get("loss")
    if isinstance(train_loss, (int, float)):
        out["train_loss"] = train_loss
        if isinstance(out.get("val_loss"), (int, float)):
            out["loss_gap"] = out["val_loss"] - train_loss  # memorisation shows as a growing gap (T5 Table 9)
    return out


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        if isinstance(value, dict):
            return {str(k): _jsonable(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [_jsonable(v) for v in value]
        return str(value)


# --------------------------------------------------------------------------------------------- finetune

def finetune_instances(config: dict) -> list[dict]:
    ft = _section(config, "finetune")
    tasks = ft.get("tasks", [])
    return [{"task": t, "method": m, "seed": s} for t in tasks for m in ft.get("methods", ["vanilla"])
            for s in ft.get("seeds", [0])]


def finetune_key(config: dict) -> dict:
    return {"finetune": {k: v for k, v in _section(config, "finetune").items() if k not in OWN_FINETUNE_KEYS}}


def finetune_stage(ctx: StageContext) -> dict:
    """One task × method × seed (the runner spreads seeds over stages so each is resumable on its own)."""
    section = {k: v for k, v in _section(ctx.config, "finetune").items() if k not in OWN_FINETUNE_KEYS}
    task = ctx.params["task"]
    prepared = ctx.parents["prepare"]
    data = section.pop("data", None)
    if (prepared / SYNTH_TASKS_DIR / task).is_dir():
        data = str(prepared / SYNTH_TASKS_DIR)
    elif data is None:
        raise ConfigError(f"task '{task}' is not a synthetic task of this corpus; set finetune.data to the folder "
                          "holding it (e.g. ../shared/data/glue)", "finetune.data")
    pretrained = ctx.parents["pretrain"] / ctx.parent_results["pretrain"].get("model", "model")
    if not progress_enabled():
        section["progress"] = False
    mixture = section.get("mixture")
    if isinstance(mixture, dict) and mixture.get("unsupervised") and not mixture.get("shards"):
        section["mixture"] = {**mixture, "shards": str(prepared / "shards")}  # the cell's own pretraining data
    config = from_dict(FinetuneConfig, {**section, "task": task, "data": data, "checkpoint": str(pretrained),
                                        "tokenizer": str(_tokenizer_of(ctx)),
                                        "methods": [ctx.params["method"]], "seeds": [ctx.params["seed"]]},
                       where="finetune")
    summary = finetune(config, ctx.out / "run")
    return _score(ctx.out / "run", ctx.params, summary)


def _score(run: Path, params: dict, summary: dict) -> dict:
    """The seed's best dev score (the mean of the task's official metrics, as finetune ranks epochs)."""
    best_path = run / params["method"] / f"seed-{params['seed']}" / "best.json"
    if not best_path.is_file():
        raise MaskbenchError(f"fine-tuning wrote no {best_path}")
    best = read_json(best_path)
    metrics = summary.get("metrics") or ["score"]
    return {"task": params["task"], "method": params["method"], "seed": params["seed"], "metric": "/".join(metrics),
            "score": float(best["score"]), "dev": best.get("dev", {}), "best_epoch": best.get("best_epoch"),
            "train_seconds": best.get("train_seconds"), "baselines": summary.get("baselines"),
            "transfer_scores": {name: float(r["score"]) for name, r in (best.get("transfer") or {}).items()}}


def _load_pretrained(ctx: StageContext):
    model_dir = ctx.parents["pretrain"] / ctx.parent_results["pretrain"].get("model", "model")
    return load_model(model_dir), load_tokenizer(_tokenizer_of(ctx))


def _samples(ctx: StageContext) -> list[str]:
    path = ctx.parents["prepare"] / "samples.txt"
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def probe_stage(ctx: StageContext) -> dict:
    """A linear probe per layer on frozen hidden states, for each probe task (accuracy per layer)."""
    section = from_dict(ProbeSection, _section(ctx.config, "probe"), where="probe")
    model, tokenizer = _load_pretrained(ctx)
    layers: dict[str, list[float]] = {}
    baselines: dict[str, float] = {}
    results = []
    for task in section.tasks:
        profile = _section(ctx.config, "data").get("synth_profile", "standard")
        config = from_dict(ProbeConfig, {"profile": profile, **section.options, "task": task}, where="probe.options")
        texts = _samples(ctx) if task == "token_identity" else None
        result = probe(model, tokenizer, config, texts=texts, name=task)
        results.append(result)
        for subset, values in result.accuracy.items():
            name = task if len(result.accuracy) == 1 else f"{task}/{subset}"
            layers[name] = [float(v) for v in values]
            baselines[name] = float(result.baseline[subset])
        write_json(ctx.out / f"{task}.json", result.to_json())
    if results:
        plot_probes(results, ctx.out / "probes.png")
    return {"layers": layers, "baselines": baselines, "png": "probes.png"}


def heads_stage(ctx: StageContext) -> dict:
    """Classify every head over sample sentences: heads.json and the layer × head map heads.png."""
    section = from_dict(HeadsSection, _section(ctx.config, "heads"), where="heads")
    model, tokenizer = _load_pretrained(ctx)
    texts = _samples(ctx)[: section.samples]
    thresholds = from_dict(HeadThresholds, section.options, where="heads.options")
    report = head_patterns(model, tokenizer, texts, thresholds=thresholds, progress=progress_enabled())
    write_json(ctx.out / "heads.json", report.to_json())
    plot_heads(report, ctx.out / "heads.png")
    counts = {label: len(heads) for label, heads in report.to_json()["summary"].items()}
    return {"json": "heads.json", "png": "heads.png", "counts": counts}


def attention_stage(ctx: StageContext) -> dict:
    """A self-contained attention view (head, model and neuron views) of one sentence."""
    section = from_dict(AttentionSection, _section(ctx.config, "attention"), where="attention")
    model, tokenizer = _load_pretrained(ctx)
    text = section.text or _samples(ctx)[0]
    data = attention(model, tokenizer, text, pair=section.pair)
    write_html(data, ctx.out / "attention.html", views=section.views)
    return {"html": "attention.html", "text": text}


def _enabled(section: str):
    def instances(config: dict) -> list[dict]:
        return [{}] if _section(config, section).get("enabled", False) else []

    return instances


STAGES: dict[str, StageDef] = {
    "prepare": StageDef("prepare", prepare_stage, sections=("data", "tokenizer", "prepare")),
    "pretrain": StageDef("pretrain", pretrain_stage, parents=("prepare",), key_config=pretrain_key, resumable=True),
    "finetune": StageDef("finetune", finetune_stage, parents=("prepare", "pretrain"), instances=finetune_instances,
                         key_config=finetune_key),
    "probe": StageDef("probe", probe_stage, sections=("probe",), parents=("prepare", "pretrain"),
                      instances=_enabled("probe")),
    "heads": StageDef("heads", heads_stage, sections=("heads",), parents=("prepare", "pretrain"),
                      instances=_enabled("heads")),
    "attention": StageDef("attention", attention_stage, sections=("attention",), parents=("prepare", "pretrain"),
                          instances=_enabled("attention")),
}
