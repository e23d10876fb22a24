"""Which positions to corrupt: units (token / whole word / span / PMI n-gram) and how many of them.

Every policy reduces to the same two steps, both vectorised over the batch:

1. *Units*: a boolean `unit_starts` [B, L] marks the maskable token that opens each unit; a unit runs until
   the next start or the next non-maskable token. Token units start at every maskable token; whole words at
   every word start; SpanBERT spans at the first word of each random geometric-length group of words; PMI
   units at the first word of each matched n-gram (other words stay single units).
2. *Sampling*: every unit gets a random key. `exact` orders the units of each row by key and walks the
   cumulative token count: a unit belongs to copy `floor(midpoint / target)` where `midpoint` is its centre
   in that running count and `target = round(rate * n)` tokens. Copy 0 is "the selection"; copies 1..k-1
   are further disjoint selections of the same size (for MLM with predict_rate > mask_rate). For single-token
   units this selects exactly `target` tokens; for longer units the count is as close to the target as the
   unit boundaries allow (a unit straddling the target is kept only when that lands nearer to it).
   `bernoulli` selects each unit independently: copy `floor(u / rate)` for a uniform `u` per unit.

Single-token units take a shorter road (`token_selection`): one random key per token, and only the keys
under a per-row threshold (the need plus a 4-sigma margin) are ranked, in a small [B, ~need] block; the
result is a list of coordinates, so corruption touches the selected positions only.

Nothing here loops over tokens or sequences; each step is a sort, a cumulative sum, a scatter or a gather.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError

NOT_SELECTED = -1


def special_table(vocab_size: int, special_ids) -> torch.Tensor:
    """Bool [vocab_size]: True at special ids. Indexing it beats `torch.isin` (a sort) by far."""
    table = torch.zeros(vocab_size, dtype=torch.bool)
    table[torch.as_tensor(list(special_ids), dtype=torch.long)] = True
    return table


def maskable_positions(input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                       specials: torch.Tensor) -> torch.Tensor:
    """Bool [B, L]: attended tokens that are not special (CLS, SEP, PAD, MASK, sentinels...)."""
    if int(input_ids.max()) >= len(specials) or int(input_ids.min()) < 0:
        raise ConfigError(f"input_ids hold ids outside the vocabulary [0, {len(specials)}); the objective's "
                          "vocab_size does not match the tokenizer", "vocab_size")
    maskable = ~specials.to(input_ids.device)[input_ids]
    if attention_mask is not None:
        maskable &= attention_mask.bool()
    return maskable


def check_every_row_maskable(maskable: torch.Tensor) -> torch.Tensor:
    """Per-row count of maskable tokens; a row with none is an error (it cannot be given a target)."""
    counts = maskable.sum(dim=1)
    if counts.numel() and bool((counts == 0).any()):
        row = int((counts == 0).nonzero()[0, 0])
        raise ConfigError(f"sequence {row} of the batch has no maskable token (only special or padding tokens); "
                          "drop empty rows before masking or check special_ids")
    return counts


def word_starts_from_batch(batch: dict, maskable: torch.Tensor, unit: str) -> torch.Tensor:
    """Bool [B, L] of word-initial maskable tokens, from `word_starts` or `word_ids` (-1 = no word)."""
    if "word_starts" in batch:
        starts = batch["word_starts"].bool()
    elif "word_ids" in batch:
        word_ids = batch["word_ids"]
        previous = torch.nn.functional.pad(word_ids[:, :-1], (1, 0), value=-1)
        starts = (word_ids != previous) & (word_ids >= 0)
    else:
        raise ConfigError(f"unit '{unit}' needs 'word_starts' or 'word_ids' in the batch; "
                          "use a loader that provides them or unit = \"token\"", key="unit")
    return unit_starts_from_word_starts(starts, maskable)


def unit_starts_from_word_starts(starts: torch.Tensor, maskable: torch.Tensor) -> torch.Tensor:
    """A unit also starts at a maskable token that follows a non-maskable one (e.g. right after [CLS])."""
    after_gap = torch.nn.functional.pad(~maskable[:, :-1], (1, 0), value=True)
    return maskable & (starts | after_gap)


def unit_index(unit_starts: torch.Tensor, maskable: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit id [B, L] of every token (0.. per row; non-maskable tokens get 0 and must be masked out by the
    caller) and unit length [B, L] indexed by unit id (0 for ids beyond the row's units)."""
    ids = unit_starts.long().cumsum(dim=1) - 1
    ids = ids.clamp_(min=0)
    lengths = torch.zeros_like(ids).scatter_add_(1, ids, maskable.long())
    return ids, lengths


def target_counts(n: torch.Tensor, rate: float) -> torch.Tensor:
    """round(rate * n) tokens per row (half to even, like Python's round), at least 1 and at most n."""
    return torch.round(n.double() * rate).long().clamp_(min=1).minimum(n)


def _uniform(shape, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device, dtype=torch.float32)


def smallest_sorted(keys: torch.Tensor, k: int) -> torch.Tensor:
    """Indices [B, k] of each row's k smallest keys, in increasing order (unsorted top-k, then a small sort:
    several times faster than a sorted top-k over the whole row)."""
    values, index = keys.topk(k, dim=1, largest=False, sorted=False)
    return index.gather(1, values.argsort(dim=1))


@dataclass
class SparseSelection:
    """Selected tokens as coordinates: row, column, copy index and rank (0 = first in the random order)."""

    rows: torch.Tensor
    cols: torch.Tensor
    copy: torch.Tensor
    rank: torch.Tensor


def token_selection(maskable: torch.Tensor, rate: float, copies: int, sampling: str,
                    generator: torch.Generator, margin: float = 4.0) -> SparseSelection:
    """Single-token units, as coordinates. `exact`: in each row the copies * target tokens with the smallest
    random keys, in key order, fill copy 0, then copy 1, ...; `bernoulli`: copy floor(u / rate).

    Only the tokens whose key falls under a per-row threshold (the expected need plus a 4-sigma margin) are
    ranked, so the only full-size work is one random draw and one comparison; a row whose candidates fall
    short (probability ~1e-5) sends the batch through the exact full ranking instead.
    """
    batch, length = maskable.shape
    device = maskable.device
    keys = _uniform((batch, length), generator, device)
    keys.masked_fill_(~maskable, 2.0)
    if sampling == "bernoulli":
        rows, cols = (keys < rate * copies).nonzero(as_tuple=True)
        copy = torch.floor(keys[rows, cols] / rate).long().clamp_(max=copies - 1)
        return SparseSelection(rows, cols, copy, torch.zeros_like(copy))
    n = maskable.sum(dim=1)
    target = target_counts(n, rate)
    need = (target * copies).minimum(n)
    threshold = ((need + margin * need.double().sqrt() + 2 * margin) / n.clamp(min=1)).clamp(max=1.0)
    candidates = keys < threshold.float().view(-1, 1)
    counts = candidates.sum(dim=1)
    if bool((counts < need).any()):
        width = int(need.max())
        order = smallest_sorted(keys, width)
    else:
        width = int(counts.max())
        rows, cols = candidates.nonzero(as_tuple=True)
        slot = torch.arange(rows.shape[0], device=device) - (counts.cumsum(0) - counts)[rows]
        cell = rows * width + slot
        block = torch.full((batch * width,), 3.0, device=device)
        block[cell] = keys.masked_select(candidates)
        block_cols = torch.zeros(batch * width, dtype=torch.long, device=device)
        block_cols[cell] = cols
        order = block_cols.view(batch, width).gather(1, block.view(batch, width).argsort(dim=1))
    rank = torch.arange(order.shape[1], device=device).expand(batch, -1)
    keep = rank < need.view(-1, 1)
    rows = torch.arange(batch, device=device).view(-1, 1).expand_as(order)[keep]
    rank = rank[keep]
    return SparseSelection(rows, order[keep], torch.div(rank, target[rows], rounding_mode="floor"), rank)


def assign_copies(unit_starts: torch.Tensor, maskable: torch.Tensor, rate: float, copies: int,
                  sampling: str, generator: torch.Generator, word_starts: torch.Tensor | None = None) -> torch.Tensor:
    """Copy index [B, L] of every token (0..copies-1), or NOT_SELECTED.

    Units never split across copies, except when `word_starts` is given (SpanBERT spans): then the span
    that straddles a copy's budget is cut at a word boundary, as SpanBERT truncates its last span.
    Units longer than the per-copy target go last in the random order, so one huge word cannot leave a
    copy empty while shorter units remain.
    """
    batch, length = maskable.shape
    device = maskable.device
    ids, lengths = unit_index(unit_starts, maskable)
    keys = _uniform((batch, length), generator, device)
    if sampling == "bernoulli":
        unit_copy = torch.floor(keys / rate).long()
        token_copy = unit_copy.gather(1, ids)
    else:
        num_units = unit_starts.sum(dim=1, keepdim=True)
        target = target_counts(maskable.sum(dim=1, keepdim=True), rate)
        keys += (lengths > target).float()
        keys.masked_fill_(torch.arange(length, device=device) >= num_units, 3.0)
        # only the first copies * target units in key order can be selected (each holds >= 1 token)
        need = min(length, int(target.max()) * copies)
        order = smallest_sorted(keys, need)
        sorted_lengths = lengths.gather(1, order)
        ends = sorted_lengths.cumsum(dim=1)
        unreachable = copies * (length + 1)
        offsets = torch.where(sorted_lengths > 0, ends - sorted_lengths, unreachable)
        before = torch.full_like(ids, unreachable).scatter_(1, order, offsets)
        # twice the midpoint, in integers: 2 * (tokens before the unit) + unit length
        if word_starts is None:
            twice_midpoint = 2 * before.gather(1, ids) + lengths.gather(1, ids)
        else:
            twice_midpoint = 2 * before.gather(1, ids) + _twice_word_midpoint_in_unit(unit_starts, word_starts,
                                                                                    maskable, ids)
        token_copy = torch.div(twice_midpoint, 2 * target, rounding_mode="floor")
    token_copy.masked_fill_(~maskable | (token_copy >= copies), NOT_SELECTED)
    return token_copy


def _twice_word_midpoint_in_unit(unit_starts: torch.Tensor, word_starts: torch.Tensor, maskable: torch.Tensor,
                                 unit_ids: torch.Tensor) -> torch.Tensor:
    """Per token: twice the centre of its word, counted in tokens from the start of its unit."""
    count = maskable.long().cumsum(dim=1) - 1
    offset = count - _first_value(count, unit_starts, unit_ids).gather(1, unit_ids)
    word_ids, word_lengths = unit_index(word_starts, maskable)
    word_offset = _first_value(offset, word_starts, word_ids)
    return 2 * word_offset.gather(1, word_ids) + word_lengths.gather(1, word_ids)


def _first_value(values: torch.Tensor, starts: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """Per group id: `values` at the group's start token ([B, L]; one spare column absorbs the rest)."""
    width = values.shape[1]
    out = torch.zeros(values.shape[0], width + 1, dtype=values.dtype, device=values.device)
    out.scatter_(1, torch.where(starts, group_ids, width), values)
    return out[:, :width]


def exact_subset(candidates: torch.Tensor, counts: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Bool [B, L]: a uniformly random subset of exactly min(counts[b], #candidates) candidate positions."""
    batch, length = candidates.shape
    keys = _uniform((batch, length), generator, candidates.device)
    keys.masked_fill_(~candidates, 2.0)
    need = min(length, int(counts.max())) if counts.numel() else 0
    out = torch.zeros_like(candidates)
    if need <= 0:
        return out
    order = smallest_sorted(keys, need)
    chosen = torch.arange(need, device=candidates.device) < counts.view(-1, 1)
    return out.scatter_(1, order, chosen) & candidates


def geometric_span_starts(unit_starts_words: torch.Tensor, maskable: torch.Tensor, span_p: float, max_span: int,
                          generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """SpanBERT units: the words of each row cut into consecutive groups whose lengths (in words) follow a
    geometric(span_p) distribution clipped to [1, max_span]. Returns (unit_starts [B, L], group lengths in
    words [B, W] for the groups that exist; 0 beyond)."""
    batch, length = maskable.shape
    device = maskable.device
    lengths = sample_clipped_geometric((batch, length), span_p, max_span, generator, device)
    ends = lengths.cumsum(dim=1)
    word_index = unit_starts_words.long().cumsum(dim=1) - 1
    group = torch.searchsorted(ends, word_index.clamp(min=0), right=True)
    previous = torch.nn.functional.pad(group[:, :-1], (1, 0), value=-1)
    starts = unit_starts_from_word_starts(unit_starts_words & (group != previous), maskable)
    return starts, lengths


def sample_clipped_geometric(shape, span_p: float, max_span: int, generator: torch.Generator, device) -> torch.Tensor:
    """Span lengths 1..max_span with P(l) proportional to p (1-p)^(l-1) (SpanBERT), by inverse CDF."""
    support = torch.arange(1, max_span + 1, dtype=torch.float64)
    probs = span_p * (1 - span_p) ** (support - 1)
    cdf = (probs.cumsum(0) / probs.sum()).to(device=device, dtype=torch.float32)
    cdf[-1] = 1.0
    u = _uniform(shape, generator, device)
    return torch.searchsorted(cdf, u.reshape(-1), right=True).clamp_(max=max_span - 1).reshape(shape) + 1


def clipped_geometric_mean(span_p: float, max_span: int) -> float:
    """Expected span length (in words) of the clipped geometric distribution (3.78 for SpanBERT's 0.2, 10)."""
    weights = [span_p * (1 - span_p) ** (length - 1) for length in range(1, max_span + 1)]
    return sum(length * w for length, w in zip(range(1, max_span + 1), weights)) / sum(weights)
