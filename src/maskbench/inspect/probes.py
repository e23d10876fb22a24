"""Layer-wise linear probes: how much of a property each layer's frozen hidden states expose linearly.

For every layer (the embeddings, then each Transformer layer) a softmax-regression probe is trained on
the hidden states of training positions and scored on held-out ones. All layers' probes are trained at
once as one batched matmul.

What is held out matters. Word-level tasks (`word_class`, `labels`) hold out *words* by default
(`holdout = "words"`): a share `val_fraction` of the distinct word forms is never seen in probe training
and is scored alone. A probe tested on the words it was trained on measures only whether the states
identify the word (a random embedding does that as well as a pretrained one); on new words it measures
what the model knows of a word it was never told the label of. `holdout = "sentences"` splits by
sentence instead (the words of the validation side mostly also occur in training). `token_identity`
always splits by sentence: its label is the word itself.

Tasks:
- `token_identity`: recover the input token id. A fraction `mask_rate` of the word tokens is replaced by
  `[MASK]` (always `[MASK]`: the state the model is in when it must predict); probes are trained
  separately at masked positions (what the model reconstructs) and unmasked positions (what it keeps
  about its own input) — the per-layer comparison of models pretrained with different masking rates.
- `replacement`: Wettig et al.'s layer-wise analysis of the 80-10-10 rule. A fraction `mask_rate` of the
  word tokens is selected and, per `replace` (mask, random, keep; default 0.8/0.1/0.1), replaced by
  [MASK], by a random non-special token, or kept; probes recover the *original* token per layer,
  separately at [MASK]ed, randomly replaced, kept and never-selected positions (subsets `mask`, `random`,
  `keep`, `unselected`), so a model trained with [MASK]-only and one trained with 80-10-10 can be compared
  on how each treats a corrupted position (`maskbench probe --task replacement --compare ...`).
- `word_class`: the latent word classes of the built-in synthetic language, at each word's first subword.
- `labels`: your own word-level labels from a JSONL file of {"words": [...], "labels": [...]} lines.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..config import check_choice, check_range
from ..data.synth import PROFILES, word_class_sentences
from ..errors import ConfigError, DataError, MaskbenchError
from ..progress import progress_bar
from ..runtime import progress_enabled

TASKS = ("token_identity", "replacement", "word_class", "labels")
REPLACEMENT_SUBSETS = ("mask", "random", "keep", "unselected")
HOLDOUTS = ("words", "sentences")


@dataclass
class ProbeConfig:
    """What to probe and how the probes are trained."""

    task: str = "token_identity"
    samples: int = 1000          # sentences read from the input (word_class: sentences generated)
    max_length: int = 128
    mask_rate: float = 0.15      # token_identity: fraction of word tokens replaced by [MASK]; replacement: selected
    replace: tuple[float, float, float] = (0.8, 0.1, 0.1)  # replacement: shares of [MASK] / random / kept
    max_examples: int = 20000    # per subset, positions kept (a seeded random subset)
    max_classes: int = 1000      # token_identity: the most frequent training ids; rarer ones count as errors
    val_fraction: float = 0.2    # share of sentences, or of distinct words (holdout = "words"), held out
    holdout: str = "words"       # word-level tasks: validation words never seen in training; or "sentences"
    profile: str = "standard"    # word_class: the synthetic language's profile the model was pretrained on
    epochs: int = 20
    min_steps: int = 300         # small data sets still get this many optimizer steps
    batch_size: int = 512
    lr: float = 0.01
    weight_decay: float = 0.0
    forward_batch_size: int = 16
    seed: int = 0

    def __post_init__(self):
        check_choice("task", self.task, TASKS)
        check_choice("holdout", self.holdout, HOLDOUTS)
        check_choice("profile", self.profile, tuple(PROFILES))
        check_range("samples", self.samples, 2)
        check_range("max_length", self.max_length, 4)
        check_range("mask_rate", self.mask_rate, 0, 1, low_open=True, high_open=True)
        check_range("max_examples", self.max_examples, 10)
        check_range("max_classes", self.max_classes, 2)
        check_range("val_fraction", self.val_fraction, 0, 1, low_open=True, high_open=True)
        check_range("epochs", self.epochs, 1)
        check_range("min_steps", self.min_steps, 0)
        check_range("batch_size", self.batch_size, 1)
        check_range("lr", self.lr, 0, low_open=True)
        check_range("weight_decay", self.weight_decay, 0)
        check_range("forward_batch_size", self.forward_batch_size, 1)
        self.replace = tuple(float(x) for x in self.replace)
        if len(self.replace) != 3:
            raise ConfigError(f"expected 3 shares (mask, random, keep), got {len(self.replace)}", "replace")
        from ..objectives.mlm import check_split  # lazy: objectives.mlm loads torch, and `maskbench --help` loads this package

        check_split("replace", self.replace, "mask, random, keep")


@dataclass
class ProbeResult:
    """Accuracy per layer (index 0 = embeddings) for each subset of positions."""

    name: str
    task: str
    accuracy: dict[str, list[float]]
    train_accuracy: dict[str, list[float]]
    baseline: dict[str, float]
    examples: dict[str, dict[str, int]]
    classes: dict[str, int]
    meta: dict = field(default_factory=dict)

    @property
    def num_layers(self) -> int:
        return len(next(iter(self.accuracy.values())))

    def to_json(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- hidden states

def hidden_states(model, input_ids, attention_mask, token_type_ids=None) -> list:
    """Per-layer hidden states [B, L, H] (embeddings first) of an encoder or a T5-style encoder stack."""
    import torch

    from .attention import _is_t5, encoder_of

    encoder = encoder_of(model)
    with torch.inference_mode():
        if encoder is not None:
            out = encoder(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                          output_hidden_states=True)
            return list(out.hidden_states)
        if _is_t5(model) and getattr(model, "encoder", None) is not None:
            states = []
            handles = [block.register_forward_hook(lambda m, args, out: states.append(out[0]))
                       for block in model.encoder.block]
            try:
                embedded = model.shared(input_ids)
                model.encode(input_ids, attention_mask)
            finally:
                for h in handles:
                    h.remove()
            return [embedded, *states]
    raise MaskbenchError(f"cannot probe a {type(model).__name__}: probes read encoder hidden states "
                         "(BERT, ALBERT, or a T5 model with an encoder)")


def _style(model) -> str:
    from .attention import encoder_of

    return "bert" if encoder_of(model) is not None else "t5"


def _max_length(model, limit: int) -> int:
    from .attention import encoder_of

    encoder = encoder_of(model)
    return min(limit, encoder.config.max_positions) if encoder is not None else limit


# ---------------------------------------------------------------- datasets

@dataclass
class _Examples:
    """Positions to probe: sentence index, position, subset name, label (raw)."""

    features: dict[str, np.ndarray]   # subset -> [layers, N, H]
    labels: dict[str, np.ndarray]     # subset -> [N]
    sentence: dict[str, np.ndarray]   # subset -> [N] (for the split)
    word: dict[str, np.ndarray] = field(default_factory=dict)  # subset -> [N] word form (word-level tasks)


def _collect(model, batch: dict[str, np.ndarray], picks: dict[str, np.ndarray], labels: dict[str, np.ndarray],
             forward_batch_size: int, desc: str) -> _Examples:
    """Run the model in batches and gather hidden states at `picks[subset]` (bool [N, L])."""
    import torch

    from .attention import model_device

    device = model_device(model)
    feats = {k: [] for k in picks}
    labs = {k: [] for k in picks}
    sents = {k: [] for k in picks}
    n = batch["input_ids"].shape[0]
    bar = progress_bar(n, desc, "sent") if progress_enabled() else None  # whole lines when stderr is a log
    for start in range(0, n, forward_batch_size):
        sl = slice(start, start + forward_batch_size)
        lengths = batch["attention_mask"][sl].sum(1)
        width = int(lengths.max())
        ids = torch.from_numpy(batch["input_ids"][sl, :width])
        mask = torch.from_numpy(batch["attention_mask"][sl, :width])
        tt = torch.from_numpy(batch["token_type_ids"][sl, :width])
        states = torch.stack(hidden_states(model, ids.to(device), mask.to(device), tt.to(device))).float().cpu()
        for k, pick in picks.items():
            where = torch.from_numpy(pick[sl, :width])
            feats[k].append(states[:, where].numpy())
            labs[k].append(labels[k][sl, :width][pick[sl, :width]])
            rows = np.nonzero(pick[sl, :width])[0] + start
            sents[k].append(rows)
        if bar is not None:
            bar.update(ids.shape[0])
    if bar is not None:
        bar.close()
    return _Examples({k: np.concatenate(v, axis=1) for k, v in feats.items()},
                     {k: np.concatenate(v) for k, v in labs.items()},
                     {k: np.concatenate(v) for k, v in sents.items()})


def _cap(pick: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Keep at most `limit` True cells of `pick`, chosen uniformly at random."""
    where = np.flatnonzero(pick)
    if len(where) <= limit:
        return pick
    keep = np.zeros(pick.size, dtype=bool)
    keep[rng.choice(where, size=limit, replace=False)] = True
    return keep.reshape(pick.shape)


def _select_words(model, tokenizer, texts: Sequence[str], config: ProbeConfig, verb: str):
    """The encoded texts and a seeded `mask_rate` share of their word (non-special) positions, for the probes
    that corrupt the input: (rng, batch, special ids, word positions, selected positions)."""
    from ..data.tokenizer import special_ids
    from .attention import encode_texts

    rng = np.random.default_rng(config.seed)
    batch = encode_texts(tokenizer, texts, max_length=_max_length(model, config.max_length), style=_style(model))
    sp = special_ids(tokenizer)
    ids = batch["input_ids"]
    word = batch["attention_mask"].astype(bool) & ~np.isin(ids, sp.all)
    selected = word & (rng.random(ids.shape) < config.mask_rate)
    if not selected.any():
        raise DataError(f"no position was {verb}; give more text or a higher mask_rate")
    return rng, batch, sp, word, selected


def token_identity_examples(model, tokenizer, texts: Sequence[str], config: ProbeConfig) -> _Examples:
    """Mask `mask_rate` of word tokens; examples at masked and at unmasked positions, labelled by input id."""
    rng, batch, sp, word, masked = _select_words(model, tokenizer, texts, config, "masked")
    ids = batch["input_ids"]
    corrupted = dict(batch)
    corrupted["input_ids"] = np.where(masked, sp.mask, ids)
    picks = {"masked": _cap(masked, config.max_examples, rng), "unmasked": _cap(word & ~masked, config.max_examples, rng)}
    return _collect(model, corrupted, picks, {"masked": ids, "unmasked": ids}, config.forward_batch_size,
                    "probe features")


def replacement_examples(model, tokenizer, texts: Sequence[str], config: ProbeConfig) -> _Examples:
    """Select `mask_rate` of word tokens, replace them per `config.replace` (one uniform draw each, as the
    MLM objective does); examples at [MASK]ed / random / kept / unselected positions, labelled by the
    original id."""
    rng, batch, sp, word, selected = _select_words(model, tokenizer, texts, config, "selected")
    ids = batch["input_ids"]
    u = rng.random(ids.shape)
    to_mask, to_random = selected & (u < config.replace[0]), selected & (u >= config.replace[0]) & (
        u < config.replace[0] + config.replace[1])
    pool = np.setdiff1d(np.arange(tokenizer.get_vocab_size()), np.asarray(sp.all))
    corrupted = dict(batch)
    corrupted["input_ids"] = np.where(to_mask, sp.mask, np.where(to_random, rng.choice(pool, ids.shape), ids))
    groups = {"mask": to_mask, "random": to_random, "keep": selected & ~to_mask & ~to_random,
              "unselected": word & ~selected}
    picks = {name: _cap(pick, config.max_examples, rng) for name, pick in groups.items()}
    return _collect(model, corrupted, picks, dict.fromkeys(picks, ids), config.forward_batch_size, "probe features")


def word_label_examples(model, tokenizer, words: Sequence[Sequence[str]], labels: Sequence[Sequence],
                        config: ProbeConfig) -> _Examples:
    """Examples at each word's first subword, labelled with the word's label."""
    from .attention import encode_texts

    if len(words) != len(labels):
        raise DataError(f"{len(words)} word lists but {len(labels)} label lists")
    for n, (w, lab) in enumerate(zip(words, labels)):
        if len(w) != len(lab):
            raise DataError(f"sentence {n}: {len(w)} words but {len(lab)} labels")
    rng = np.random.default_rng(config.seed)
    batch = encode_texts(tokenizer, [list(map(str, w)) for w in words], max_length=_max_length(model, config.max_length),
                         pretokenized=True, style=_style(model))
    word_ids = batch["word_ids"]
    first = (word_ids >= 0) & np.concatenate([np.ones_like(word_ids[:, :1], bool),
                                              word_ids[:, 1:] != word_ids[:, :-1]], axis=1)
    flat = [str(x) for lab in labels for x in lab]
    names, codes = np.unique(np.array(flat, dtype=object).astype(str), return_inverse=True)
    forms, form_codes = np.unique(np.array([str(x) for w in words for x in w], dtype=object).astype(str),
                                  return_inverse=True)
    offsets = np.cumsum([0] + [len(lab) for lab in labels[:-1]])
    rows, cols = np.nonzero(first)
    grid = np.full(word_ids.shape, -1, dtype=np.int64)
    grid[rows, cols] = codes[offsets[rows] + word_ids[rows, cols]]
    form_grid = np.full(word_ids.shape, -1, dtype=np.int64)
    form_grid[rows, cols] = form_codes[offsets[rows] + word_ids[rows, cols]]
    picks = {"words": _cap(first, config.max_examples, rng)}
    # the label grid and the word-form grid are gathered at the same positions in the same order
    ex = _collect(model, batch, picks, {"words": grid * len(forms) + form_grid}, config.forward_batch_size,
                  "probe features")
    ex.word["words"] = np.asarray(forms)[ex.labels["words"] % len(forms)]
    ex.labels["words"] = np.asarray(names)[ex.labels["words"] // len(forms)]
    return ex


def _synthetic_word_classes(n: int, seed: int, profile: str = "standard") -> tuple[list[list[str]], list[list[str]]]:
    """Words and latent classes of `n` sentences of the built-in synthetic language."""
    rows = word_class_sentences(n, seed, profile=profile)
    return [list(w) for w, _ in rows], [list(c) for _, c in rows]


def read_labels(path: str | Path) -> tuple[list[list[str]], list[list]]:
    """A JSONL file of {"words": [...], "labels": [...]} lines (one sentence per line)."""
    path = Path(path)
    words, labels = [], []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"labels file not found: {path}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            w, lab = row["words"], row["labels"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DataError(f"{path}:{n}: expected a JSON object with 'words' and 'labels' lists") from None
        if not isinstance(w, list) or not isinstance(lab, list) or len(w) != len(lab) or not w:
            raise DataError(f"{path}:{n}: 'words' and 'labels' must be non-empty lists of the same length")
        words.append([str(x) for x in w])
        labels.append(lab)
    if len(words) < 2:
        raise DataError(f"{path} holds {len(words)} labelled sentence(s); probes need at least 2")
    return words, labels


# ---------------------------------------------------------------- training

def train_probes(x_train, y_train, x_val, y_val, num_classes: int, config: ProbeConfig,
                 generator=None, desc: str = "probe") -> tuple[np.ndarray, np.ndarray]:
    """Train one linear probe per layer, all at once. x: [layers, N, H]; y: class indices (-1 = unknown).

    Features are standardised with the training statistics and the bias starts at the log class
    priors, so an uninformative layer scores the majority baseline rather than below it. Training runs
    `epochs` passes, or more passes when that is fewer than `min_steps` steps. Returns (train accuracy,
    validation accuracy) per layer; unknown validation labels (-1) count as errors.
    """
    import torch
    import torch.nn.functional as F

    g = generator or torch.Generator().manual_seed(config.seed)
    xt = torch.as_tensor(x_train, dtype=torch.float32)
    xv = torch.as_tensor(x_val, dtype=torch.float32)
    yt = torch.as_tensor(y_train, dtype=torch.long)
    yv = torch.as_tensor(y_val, dtype=torch.long)
    keep = yt >= 0
    xt, yt = xt[:, keep], yt[keep]
    layers, n, h = xt.shape
    if n == 0:
        raise DataError("no training example has a known label")
    mean = xt.mean(1, keepdim=True)
    std = xt.std(1, keepdim=True).clamp_min(1e-6)
    xt = (xt - mean) / std
    xv = (xv - mean) / std
    prior = torch.bincount(yt, minlength=num_classes).float() / n
    weight = torch.zeros(layers, h, num_classes, requires_grad=True)
    bias = torch.log(prior + 1e-6).expand(layers, 1, num_classes).clone().requires_grad_(True)
    opt = torch.optim.Adam([weight, bias], lr=config.lr, weight_decay=config.weight_decay)
    steps = max(1, -(-n // config.batch_size))
    epochs = max(config.epochs, -(-config.min_steps // steps))
    bar = progress_bar(epochs * steps, desc, "step") if progress_enabled() else None
    for _ in range(epochs):
        order = torch.randperm(n, generator=g)
        for s in range(steps):
            idx = order[s * config.batch_size:(s + 1) * config.batch_size]
            logits = torch.baddbmm(bias, xt[:, idx], weight)                       # [layers, b, C]
            loss = F.cross_entropy(logits.reshape(-1, num_classes), yt[idx].repeat(layers)) * layers
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()

    def accuracy(x, y):
        with torch.no_grad():
            hits = torch.zeros(layers)
            for s in range(0, x.shape[1], 4096):
                pred = torch.baddbmm(bias, x[:, s:s + 4096], weight).argmax(-1)
                hits += (pred == y[None, s:s + 4096]).sum(1)
        return (hits / max(1, x.shape[1])).numpy()

    return accuracy(xt, yt), accuracy(xv, yv)


def _held_out(groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Bool [N]: the example's group (a sentence id or a word form) is one of a seeded share of distinct
    groups, so a whole group goes to one side; at least one group on each side when there are two."""
    ids = np.unique(groups)
    rng = np.random.default_rng(seed)
    held = rng.random(len(ids)) < fraction
    if len(ids) >= 2 and (held.all() or not held.any()):
        held[:] = False
        held[rng.integers(len(ids))] = True
    return np.isin(groups, ids[held])


def _split(sentences: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Bool [N]: example belongs to the validation side; whole sentences go to one side."""
    return _held_out(sentences, fraction, seed + 1)


def _split_words(words: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Bool [N]: the example's word form is one of the held-out forms (a seeded share of distinct forms)."""
    return _held_out(words, fraction, seed + 2)


def _fit_subset(feats, labels, sentences, config: ProbeConfig, limit_classes: bool, name: str, words=None):
    if words is not None and config.holdout == "words":
        val = _split_words(words, config.val_fraction, config.seed)
        if val.all() or not val.any():
            raise DataError("holding out words needs at least 2 distinct words; give more sentences "
                            "or --set holdout=sentences")
    else:
        val = _split(sentences, config.val_fraction, config.seed)
        if val.all() or not val.any():
            raise DataError("probes need at least 2 sentences (one for training, one for validation)")
    train_labels = labels[~val]
    classes, counts = np.unique(train_labels, return_counts=True)
    if limit_classes and len(classes) > config.max_classes:
        classes = classes[np.argsort(-counts, kind="stable")[:config.max_classes]]
        classes.sort()
    if len(classes) < 2:
        raise DataError(f"{name}: the training examples hold {len(classes)} class; probes need at least 2")
    position = np.searchsorted(classes, labels)
    position = np.clip(position, 0, len(classes) - 1)
    codes = np.where(classes[position] == labels, position, -1)
    train_acc, val_acc = train_probes(feats[:, ~val], codes[~val], feats[:, val], codes[val], len(classes), config,
                                      desc=f"probe {name}")
    values, freq = np.unique(codes[~val][codes[~val] >= 0], return_counts=True)
    majority = values[freq.argmax()]
    baseline = float((codes[val] == majority).mean())
    count = {"train": int((~val).sum()), "validation": int(val.sum())}
    if words is not None and config.holdout == "words":
        count["validation_words"] = int(len(np.unique(words[val])))
        count["train_words"] = int(len(np.unique(words[~val])))
    return train_acc, val_acc, baseline, count, len(classes)


def probe(model, tokenizer, config: ProbeConfig | None = None, *, texts: Sequence[str] | None = None,
          words: Sequence[Sequence[str]] | None = None, labels: Sequence[Sequence] | None = None,
          name: str = "model") -> ProbeResult:
    """Train and score a linear probe per layer of `model` for `config.task`.

    `token_identity` and `replacement` read `texts`; `labels` needs `words` + `labels`; `word_class` generates its
    sentences from the synthetic language (or takes `words` + `labels` when given).
    """
    config = config or ProbeConfig()
    if config.task in ("token_identity", "replacement"):
        if not texts:
            raise DataError(f"{config.task} needs input texts (--input PATH)")
        texts = [t for t in texts if t.strip()]
        build = token_identity_examples if config.task == "token_identity" else replacement_examples
        ex = build(model, tokenizer, texts, config)
        limit = True
    else:
        if words is None:
            if config.task == "labels":
                raise DataError("the labels task needs word-level labels (--labels FILE)")
            words, labels = _synthetic_word_classes(config.samples, config.seed, config.profile)
        ex = word_label_examples(model, tokenizer, words, labels, config)
        limit = False
    acc, train_acc, baseline, examples, classes = {}, {}, {}, {}, {}
    for subset in ex.features:
        if ex.labels[subset].size == 0:
            continue
        tr, va, base, count, ncls = _fit_subset(ex.features[subset], ex.labels[subset], ex.sentence[subset],
                                                config, limit, subset, ex.word.get(subset))
        acc[subset] = [round(float(v), 5) for v in va]
        train_acc[subset] = [round(float(v), 5) for v in tr]
        baseline[subset] = round(base, 5)
        examples[subset] = count
        classes[subset] = ncls
    held = "words" if ex.word and config.holdout == "words" else "sentences"
    return ProbeResult(name=name, task=config.task, accuracy=acc, train_accuracy=train_acc, baseline=baseline,
                       examples=examples, classes=classes, meta={"config": asdict(config), "holdout": held})


def holdout_note(result: ProbeResult) -> str:
    """One line that says what the validation side holds out (printed with every probe table)."""
    if result.meta.get("holdout") == "words":
        counts = next(iter(result.examples.values()))
        return (f"held out: words — validation scores {counts.get('validation_words', '?')} word forms never seen "
                f"in probe training ({counts.get('train_words', '?')} seen); what a layer knows of a new word, "
                "not whether it identifies a known one (--set holdout=sentences to split by sentence)")
    return ("held out: sentences — validation sentences are new, their words mostly are not "
            + (f"({result.task}: the label is the word itself)" if result.task in ("token_identity", "replacement")
               else "(--set holdout=words to test on new words)"))


# ---------------------------------------------------------------- reporting

def table(results: Sequence[ProbeResult]) -> str:
    """Markdown: one row per layer, one column per (model, subset)."""
    cols = [(r, s) for r in results for s in r.accuracy]
    head = "| layer | " + " | ".join(f"{r.name}: {s}" for r, s in cols) + " |"
    rows = [head, "|---:|" + "---:|" * len(cols)]
    layers = max(r.num_layers for r in results)
    for layer in range(layers):
        cells = [f"{r.accuracy[s][layer]:.3f}" if layer < len(r.accuracy[s]) else "" for r, s in cols]
        rows.append(f"| {'emb' if layer == 0 else layer} | " + " | ".join(cells) + " |")
    rows.append("| majority | " + " | ".join(f"{r.baseline[s]:.3f}" for r, s in cols) + " |")
    return "\n".join(rows)


def plot_probes(results: Sequence[ProbeResult], path: str | Path, title: str = "") -> Path:
    """Accuracy per layer: one colour per subset, one line style per model; majority baselines dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_path

    styles = ["-", "--", "-.", ":"]
    subsets = list(dict.fromkeys(s for r in results for s in r.accuracy))
    colors = dict(zip(subsets, ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]))
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for i, r in enumerate(results):
        for s, values in r.accuracy.items():
            ax.plot(range(len(values)), values, styles[i % len(styles)], marker="o", markersize=3,
                    color=colors[s], label=f"{r.name}: {s}")
            if i == 0:
                ax.axhline(r.baseline[s], color=colors[s], linewidth=0.8, linestyle=":", alpha=0.7)
    layers = max(r.num_layers for r in results)
    ax.set_xticks(range(layers))
    ax.set_xticklabels(["emb"] + [str(i) for i in range(1, layers)])
    ax.set_xlabel("layer")
    ax.set_ylabel("validation accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title or f"linear probe: {results[0].task}", fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
