"""Head patterns: what each attention head does on average over real text (Clark et al., 2019).

For every head we measure, over all real query tokens of many inputs, the mean attention mass it puts on
each pattern's target positions:

| pattern          | target keys of query i                                              |
|------------------|---------------------------------------------------------------------|
| `next`           | position i + 1                                                      |
| `previous`       | position i - 1                                                      |
| `same_token`     | other positions with the same token id, in the same sentence        |
| `other_sentence` | positions with the same token id in the other sentence of a pair    |
| `cls`            | the `[CLS]` token                                                   |
| `sep`            | `[SEP]` (delimiter / end-of-sequence) tokens                        |
| `punctuation`    | tokens made only of punctuation characters                          |
| `broad`          | (score = mean attention entropy / log(number of keys), in [0, 1])   |

A query counts for a pattern only when its target set is not empty (a sentence without repeated words
says nothing about `same_token`), and special tokens never count as "the same word". A head gets the
pattern whose score is furthest above its threshold (score / threshold >= 1), else `none`. The defaults
(`HeadThresholds`) are deliberately strict — a head must put at least half its attention on the next
token to be called a next-token head — and can be changed with `--set next=0.4` etc.
"""

from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..config import check_range
from ..errors import MaskbenchError
from ..progress import progress_bar

PATTERNS = ("next", "previous", "same_token", "other_sentence", "cls", "sep", "punctuation", "broad")
LABELS = (*PATTERNS, "none")
COLORS = {
    "next": "#1f77b4", "previous": "#aec7e8", "same_token": "#2ca02c", "other_sentence": "#98df8a",
    "cls": "#d62728", "sep": "#ff7f0e", "punctuation": "#9467bd", "broad": "#8c564b", "none": "#eeeeee",
}


@dataclass
class HeadThresholds:
    """Minimum score for each pattern (attention mass, or normalised entropy for `broad`)."""

    next: float = 0.5
    previous: float = 0.5
    same_token: float = 0.3
    other_sentence: float = 0.3
    cls: float = 0.5
    sep: float = 0.5
    punctuation: float = 0.4
    broad: float = 0.9
    min_queries: int = 20

    def __post_init__(self):
        for name in PATTERNS:
            check_range(name, getattr(self, name), 0, 1, low_open=True)
        check_range("min_queries", self.min_queries, 1)

    def vector(self) -> np.ndarray:
        return np.array([getattr(self, p) for p in PATTERNS], dtype=np.float64)


@dataclass
class TokenRoles:
    """Which token ids are `[CLS]`, delimiters, punctuation, or special (never "the same word")."""

    cls: int
    sep: tuple[int, ...]
    punctuation: np.ndarray  # bool [vocab]
    special: np.ndarray      # bool [vocab]


def _is_punctuation(token: str) -> bool:
    text = token
    for prefix in ("##", "\u2581", "\u0120"):  # WordPiece, SentencePiece, byte-level BPE markers
        if text.startswith(prefix):
            text = text[len(prefix):]
    return bool(text) and all(unicodedata.category(c).startswith("P") for c in text)


def token_roles(tokenizer) -> TokenRoles:
    """Roles of every vocabulary id, read from the tokenizer once."""
    from ..data.tokenizer import special_ids

    sp = special_ids(tokenizer)
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    punct = np.zeros(size, dtype=bool)
    special = np.zeros(size, dtype=bool)
    for token, i in vocab.items():
        if i < size:
            punct[i] = _is_punctuation(token)
    special[[i for i in sp.all if i < size]] = True
    punct &= ~special
    return TokenRoles(cls=sp.cls, sep=(sp.sep,), punctuation=punct, special=special)


@dataclass
class PatternScores:
    """Per-head pattern scores, accumulated over batches: `sums / counts` are the means."""

    sums: np.ndarray    # [layers, heads, patterns]
    counts: np.ndarray  # [patterns] queries that had a target
    samples: int = 0
    tokens: int = 0

    @property
    def scores(self) -> np.ndarray:
        return self.sums / np.maximum(self.counts, 1)

    def __add__(self, other: "PatternScores") -> "PatternScores":
        return PatternScores(self.sums + other.sums, self.counts + other.counts,
                             self.samples + other.samples, self.tokens + other.tokens)


def target_masks(input_ids, attention_mask, token_type_ids, roles: TokenRoles):
    """Bool [B, patterns-1, L, L]: key k is a target of query q for each attention-mass pattern."""
    import torch

    ids = torch.as_tensor(input_ids)
    valid = torch.as_tensor(attention_mask).bool()
    seg = torch.as_tensor(token_type_ids) if token_type_ids is not None else torch.zeros_like(ids)
    b, length = ids.shape
    pos = torch.arange(length)
    pair_valid = valid[:, :, None] & valid[:, None, :]
    next_ = (pos[None, :] == pos[:, None] + 1)[None] & pair_valid
    prev = (pos[None, :] == pos[:, None] - 1)[None] & pair_valid
    wordlike = valid & ~torch.from_numpy(roles.special)[ids.clamp(0, len(roles.special) - 1)]
    same_id = (ids[:, :, None] == ids[:, None, :]) & wordlike[:, :, None] & wordlike[:, None, :]
    same_seg = seg[:, :, None] == seg[:, None, :]
    same_token = same_id & same_seg & ~torch.eye(length, dtype=torch.bool)[None]
    other_sentence = same_id & ~same_seg
    is_cls = ids == roles.cls
    is_sep = torch.zeros_like(valid)
    for s in roles.sep:
        is_sep |= ids == s
    is_punct = torch.from_numpy(roles.punctuation)[ids.clamp(0, len(roles.punctuation) - 1)]
    keyed = [(is_cls & valid), (is_sep & valid), (is_punct & valid)]
    keyed = [valid[:, :, None] & k[:, None, :] for k in keyed]
    masks = torch.stack([next_, prev, same_token, other_sentence, *keyed], dim=1)
    return masks


def pattern_scores(attentions, input_ids, attention_mask, token_type_ids, roles: TokenRoles) -> PatternScores:
    """Score one batch. `attentions`: [B, layers, heads, L, L] (array or tensor, rows sum to 1 over real keys).

    Vectorised: one einsum gives the mass on every pattern's targets for every head and query.
    """
    import torch

    att = torch.as_tensor(attentions).float()
    if att.ndim != 5:
        raise MaskbenchError(f"attentions must be [batch, layers, heads, L, L], got {list(att.shape)}")
    valid = torch.as_tensor(attention_mask).bool()
    masks = target_masks(input_ids, attention_mask, token_type_ids, roles)      # [B, P, L, L]
    mass = torch.einsum("bnhqk,bpqk->nhpbq", att, masks.float())                # [n, h, P, B, L]
    has_target = masks.any(-1) & valid[:, None, :]                               # [B, P, L]
    sums_mass = (mass * has_target.permute(1, 0, 2).float()).sum((-1, -2))       # [n, h, P]
    counts_mass = has_target.sum((0, 2))                                         # [P]
    keys = valid.sum(-1).float()                                                 # [B]
    entropy = -(att * torch.log(att.clamp_min(1e-12))).sum(-1)                   # [B, n, h, L]
    norm = torch.log(keys.clamp_min(2.0))[:, None, None, None]
    broad_queries = valid & (keys[:, None] > 1)                                  # [B, L]
    sums_broad = ((entropy / norm) * broad_queries[:, None, None, :].float()).sum((0, -1))  # [n, h]
    sums = torch.cat([sums_mass, sums_broad[..., None]], dim=-1).double().numpy()
    counts = np.append(counts_mass.numpy(), int(broad_queries.sum())).astype(np.int64)
    return PatternScores(sums, counts, samples=int(att.shape[0]), tokens=int(valid.sum()))


def classify_heads(scores: PatternScores | np.ndarray, thresholds: HeadThresholds | None = None,
                   counts: np.ndarray | None = None) -> np.ndarray:
    """Label every head: the pattern with the largest score / threshold if that is >= 1, else "none".

    `scores` is a `PatternScores` or an array [layers, heads, patterns] of mean scores (then `counts`
    optionally gives the queries behind each pattern). Returns a string array [layers, heads].
    """
    thresholds = thresholds or HeadThresholds()
    if isinstance(scores, PatternScores):
        counts, scores = scores.counts, scores.scores
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 3 or scores.shape[-1] != len(PATTERNS):
        raise MaskbenchError(f"scores must be [layers, heads, {len(PATTERNS)}], got {list(scores.shape)}")
    ratio = scores / thresholds.vector()
    if counts is not None:
        ratio = np.where(np.asarray(counts) >= thresholds.min_queries, ratio, 0.0)
    best = ratio.argmax(-1)
    labels = np.array(PATTERNS, dtype=object)[best]
    labels[np.take_along_axis(ratio, best[..., None], -1)[..., 0] < 1.0] = "none"
    return labels.astype(str)


@dataclass
class HeadReport:
    """Scores and labels of every head, with what was measured."""

    scores: PatternScores
    labels: np.ndarray
    thresholds: HeadThresholds = field(default_factory=HeadThresholds)

    def to_json(self) -> dict:
        s = self.scores.scores
        layers, heads, _ = s.shape
        return {
            "patterns": list(PATTERNS),
            "thresholds": asdict(self.thresholds),
            "layers": layers, "heads": heads,
            "samples": self.scores.samples, "tokens": self.scores.tokens,
            "queries_per_pattern": dict(zip(PATTERNS, self.scores.counts.tolist())),
            "labels": self.labels.tolist(),
            "scores": {p: np.round(s[..., i], 5).tolist() for i, p in enumerate(PATTERNS)},
            "summary": {label: [f"L{l}H{h}" for l, h in zip(*np.nonzero(self.labels == label))] for label in LABELS},
        }

    def table(self) -> str:
        """Markdown summary: how many heads follow each pattern, and which (with their score)."""
        s = self.scores.scores
        rows = ["| pattern | heads | which (score) |", "|---|---:|---|"]
        for label in LABELS:
            where = list(zip(*np.nonzero(self.labels == label)))
            if label == "none":
                which = ""
            else:
                i = PATTERNS.index(label)
                where.sort(key=lambda lh: -s[lh[0], lh[1], i])
                shown = [f"L{l}H{h} ({s[l, h, i]:.2f})" for l, h in where[:12]]
                which = ", ".join(shown) + (f", ... (+{len(where) - 12})" if len(where) > 12 else "")
            rows.append(f"| {label} | {len(where)} | {which} |")
        return "\n".join(rows)


def head_patterns(model, tokenizer, texts: Sequence[str], pairs: Sequence[str] | None = None, *,
                  thresholds: HeadThresholds | None = None, batch_size: int = 16, max_length: int = 128,
                  progress: bool = True) -> HeadReport:
    """Run the encoder over `texts` (optionally paired) and score and classify every head."""
    import torch

    from .attention import encode_texts, encoder_of, model_device

    check_range("batch_size", batch_size, 1)
    check_range("max_length", max_length, 1)
    device = model_device(model)
    encoder = encoder_of(model)
    style = "bert" if encoder is not None else _t5_encoder_style(model)
    if not texts:
        raise MaskbenchError("head_patterns needs at least one text")
    if pairs is not None and len(pairs) != len(texts):
        raise MaskbenchError(f"{len(texts)} texts but {len(pairs)} pairs")
    thresholds = thresholds or HeadThresholds()
    roles = token_roles(tokenizer)
    limit = min(max_length, encoder.config.max_positions) if encoder is not None else max_length
    total = None
    bar = progress_bar(len(texts), "heads", "text") if progress else None  # whole lines when stderr is a log
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start:start + batch_size])
        pchunk = list(pairs[start:start + batch_size]) if pairs is not None else None
        batch = encode_texts(tokenizer, chunk, pchunk, max_length=limit, style=style)
        ids = torch.from_numpy(batch["input_ids"])
        mask = torch.from_numpy(batch["attention_mask"])
        tt = torch.from_numpy(batch["token_type_ids"])
        with torch.inference_mode():
            att = _batch_attentions(model, encoder, ids.to(device), mask.to(device), tt.to(device)).float().cpu()
        part = pattern_scores(att, ids, mask, tt, roles)
        total = part if total is None else total + part
        if bar is not None:
            bar.set_postfix(tokens=total.tokens)
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return HeadReport(total, classify_heads(total, thresholds), thresholds)


def _t5_encoder_style(model) -> str:
    from .attention import _is_t5

    if _is_t5(model) and getattr(model, "encoder", None) is not None:
        return "t5"
    raise MaskbenchError(f"cannot classify heads of a {type(model).__name__}: head patterns are measured on "
                         "encoder self-attention (BERT, ALBERT, or a T5 model with an encoder)")


def _batch_attentions(model, encoder, ids, mask, tt):
    """[B, layers, heads, L, L] encoder self-attention probabilities for one padded batch."""
    import torch

    if encoder is not None:
        out = encoder(ids, attention_mask=mask, token_type_ids=tt, output_attentions=True)
        return torch.stack(out.attentions, dim=1)
    _, attn = model.encode(ids, mask, output_attentions=True)
    return torch.stack(attn, dim=1)


def _ink(hex_color: str) -> str:
    """Black or white text, whichever reads better on `hex_color`."""
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "white"


def plot_heads(report: HeadReport, path: str | Path, title: str = "") -> Path:
    """heads.png: a layer x head grid coloured by pattern, each cell showing its winning score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from ..io import atomic_path

    labels = report.labels
    layers, heads = labels.shape
    index = np.vectorize(LABELS.index)(labels)
    scores = report.scores.scores
    fig_w = max(6.0, 0.55 * heads + 3.2)
    fig_h = max(3.0, 0.45 * layers + 1.4)
    fig, ax = plt.subplots(figsize=(fig_w, fig_h), dpi=120)
    ax.imshow(index, cmap=ListedColormap([COLORS[label] for label in LABELS]), vmin=0, vmax=len(LABELS) - 1,
              aspect="auto")
    for l in range(layers):
        for h in range(heads):
            if labels[l, h] != "none":
                value = scores[l, h, PATTERNS.index(labels[l, h])]
                ax.text(h, l, f"{value:.2f}", ha="center", va="center", fontsize=6.5, color=_ink(COLORS[labels[l, h]]))
    ax.set_xticks(range(heads))
    ax.set_yticks(range(layers))
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(np.arange(-0.5, heads), minor=True)
    ax.set_yticks(np.arange(-0.5, layers), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.0)
    ax.tick_params(which="minor", length=0)
    ax.set_title(title or "attention head patterns", fontsize=10)
    counts = {label: int((labels == label).sum()) for label in LABELS}
    ax.legend(handles=[Patch(facecolor=COLORS[p], edgecolor="#999", label=f"{p} ({counts[p]})") for p in LABELS],
              loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
