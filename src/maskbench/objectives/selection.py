"""Which positions to corrupt: units (token / whole word / span / PMI n-gram / ALBERT n-gram) and how many.

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

The hot paths (token units; whole words and PMI n-grams, which are never cut) run in NumPy. A masking call
is a few dozen array operations on a few thousand elements, so its cost is per-operation overhead, about
half of torch's in NumPy; and NumPy's PCG64 draws random numbers several times faster than torch's
Mersenne Twister. Every random choice still flows from the caller's `torch.Generator`: one draw of two
64-bit numbers from it sets the state of the PCG64 of that call (`numpy_rng`). Each unit's sort value packs
(long flag, random 32-bit key, flat position) into one int64, so one row-wise `np.sort` (after an
`np.partition` when the need is a small share of the row) orders the units, ties broken by position, and
the positions are read back from the low bits; only the first copies * target values of a row can be
selected, so only they are walked.
SpanBERT spans and the T5 objectives keep the dense torch path (`assign_copies`, `exact_subset`).
ALBERT's n-grams (`ngram_selection`) follow the reference's greedy rule instead of a partition into units:
random start words in turn, each with its own n-gram length, skipped when it would overlap; that rule is
sequential within a row, so it steps through the candidates in lockstep over the rows of the batch.

Nothing here loops over tokens or sequences; each step is a sort, a cumulative sum, a scatter or a gather.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError

NOT_SELECTED = -1


_LOCAL = threading.local()
_PCG_INCREMENT = 0xDA3E39CB94B95BDB_5851F42D4C957F2D | 1  # any odd 128-bit stream constant


def numpy_rng(generator: torch.Generator | np.random.Generator) -> np.random.Generator:
    """The NumPy generator for one call, its 128-bit PCG64 state taken from one draw of two 64-bit numbers
    from the caller's torch generator: the torch seed still decides everything, and the torch generator
    advances by one draw per call. The PCG64 object is reused per thread (building one costs more than a
    whole masking call); a NumPy generator passed in is returned as is."""
    if isinstance(generator, np.random.Generator):
        return generator
    high, low = torch.empty(2, dtype=torch.int64, device=generator.device).random_(generator=generator).tolist()
    rng = getattr(_LOCAL, "rng", None)
    if rng is None:
        rng = _LOCAL.rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = {"bit_generator": "PCG64", "state": {"state": (high << 64) | low, "inc": _PCG_INCREMENT},
                               "has_uint32": 0, "uinteger": 0}
    return rng


def as_array(value) -> np.ndarray:
    """A NumPy view of a CPU tensor (or the array itself); other devices are copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.numpy() if value.device.type == "cpu" else value.cpu().numpy()
    return np.asarray(value)


def maskable_positions(input_ids: np.ndarray, attention_mask: np.ndarray | None, plain: np.ndarray) -> np.ndarray:
    """Bool [B, L]: attended tokens that are not special (CLS, SEP, PAD, MASK, sentinels...).

    `plain` is the objective's cached bool table of non-special ids; one `take` looks every token up (and
    refuses ids past the vocabulary; negative ids, which `take` would wrap, are checked apart)."""
    try:
        if input_ids.size and int(input_ids.min()) < 0:
            raise IndexError
        maskable = plain.take(input_ids)
    except IndexError:
        raise ConfigError(f"input_ids hold ids outside the vocabulary [0, {len(plain)}); the objective's "
                          "vocab_size does not match the tokenizer", "vocab_size") from None
    if attention_mask is not None:
        maskable &= attention_mask if attention_mask.dtype == np.bool_ else attention_mask != 0
    return maskable


def check_every_row_maskable(maskable: np.ndarray) -> np.ndarray:
    """Per-row count of maskable tokens; a row with none is an error (it cannot be given a target)."""
    counts = np.add.reduce(maskable, axis=1, dtype=np.int64)
    if counts.size and not counts.all():
        row = int(np.flatnonzero(counts == 0)[0])
        raise ConfigError(f"sequence {row} of the batch has no maskable token (only special or padding tokens); "
                          "drop empty rows before masking or check special_ids")
    return counts


def word_starts_from_batch(batch: dict, maskable: np.ndarray, unit: str) -> np.ndarray:
    """Bool [B, L] of word-initial maskable tokens, from `word_starts` or `word_ids` (-1 = no word); a unit
    also starts at a maskable token that follows a non-maskable one (e.g. right after [CLS])."""
    if "word_starts" in batch:
        starts = as_array(batch["word_starts"]).astype(np.bool_)  # a copy: edited below
    elif "word_ids" in batch:
        word_ids = as_array(batch["word_ids"])
        starts = word_ids >= 0
        starts[:, 1:] &= word_ids[:, 1:] != word_ids[:, :-1]
    else:
        raise ConfigError(f"unit '{unit}' needs 'word_starts' or 'word_ids' in the batch; "
                          "use a loader that provides them or unit = \"token\"", key="unit")
    if starts.shape[1]:
        starts[:, 0] = True
        starts[:, 1:] |= ~maskable[:, :-1]
    starts &= maskable
    return starts


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


def target_counts(n, rate: float):
    """round(rate * n) tokens per row (half to even, like Python's round), at least 1 and at most n
    (a torch tensor or a NumPy array, returned as the same kind)."""
    if isinstance(n, torch.Tensor):
        return torch.round(n.double() * rate).long().clamp_(min=1).minimum(n)
    return np.minimum(np.maximum(np.rint(n * rate).astype(np.int64), 1), n)


def _uniform(shape, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device, dtype=torch.float32)


def smallest_sorted(keys: torch.Tensor, k: int) -> torch.Tensor:
    """Indices [B, k] of each row's k smallest keys, in increasing order (unsorted top-k, then a small sort:
    several times faster than a sorted top-k over the whole row)."""
    values, index = keys.topk(k, dim=1, largest=False, sorted=False)
    return index.gather(1, values.argsort(dim=1))


@dataclass
class SparseSelection:
    """Selected tokens as flat positions (row * L + column) with their copy index and rank (0 = first in the
    row's random order; empty when the selector does not rank). Rows and columns are derived on demand."""

    flat: np.ndarray
    length: int
    copy: np.ndarray
    rank: np.ndarray

    @property
    def rows(self) -> np.ndarray:
        return self.flat // self.length

    @property
    def cols(self) -> np.ndarray:
        return self.flat % self.length


def random_keys(count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` independent uniform 32-bit keys, as the high half of uint64 words (the low half is spare)."""
    return rng.bit_generator.random_raw(count)


_KEY_SPAN = 2 ** 32
_ABSENT = 1 << 62  # sort value of a position that opens no unit: after every unit
_LONG = 1 << 61  # units longer than the per-copy target go after the others
_POSITION_BITS = 29  # flat positions below 2^29 fit under the 32 key bits and the two flags
_KEY_FIELD = ((1 << 61) - 1) & ~((1 << _POSITION_BITS) - 1)  # bits 29..60


def _bernoulli_chosen(keys: np.ndarray, rate: float) -> np.ndarray:
    """Bool: the 32-bit key u (high half of each word) lies below rate * 2^32, probability rate to 2^-32."""
    return (keys >> np.uint64(32)) < np.uint64(min(_KEY_SPAN, math.floor(rate * _KEY_SPAN)))


def _bernoulli_copy(keys: np.ndarray, rate: float, copies: int) -> np.ndarray:
    """Copy floor(u / rate) of a key whose uniform u lies below copies * rate."""
    if copies == 1:
        return np.zeros(len(keys), dtype=np.int64)
    u = (keys >> np.uint64(32)).astype(np.float64)
    return np.minimum(np.floor(u / (rate * _KEY_SPAN)).astype(np.int64), copies - 1)


def sort_values(flat: np.ndarray, keys: np.ndarray, long: np.ndarray | None = None) -> np.ndarray:
    """Sort values of units opening at flat positions: (long flag, 32-bit random key, position) in one int64
    each, so that sorting the values orders units by key, long units last, ties broken by position; the
    position is read back from the low bits. `keys` are `random_keys` words (the key is their high half)."""
    value = ((keys >> np.uint64(3)).view(np.int64) & _KEY_FIELD) | flat
    if long is not None:
        value |= long.astype(np.int64) * _LONG
    return value


def _sorted_prefix(values: np.ndarray, width: int) -> np.ndarray:
    """Each row's `width` smallest values in increasing order (partition first when the prefix is short)."""
    if width < values.shape[1] // 4:
        return np.sort(np.partition(values, width - 1, axis=1)[:, :width], axis=1)
    return np.sort(values, axis=1)[:, :width]


def exact_units(values: np.ndarray, sizes: np.ndarray | None, target: np.ndarray, copies: int,
                length: int) -> SparseSelection:
    """The exact rule on sort values [B, L] (`sort_values` at unit starts, `_ABSENT` elsewhere): in each row,
    walk the units in value order; a unit goes to copy floor(midpoint / target) of its centre in the running
    token count, and is dropped from copy `copies` on. `sizes` [B * L] holds each unit's length in tokens at
    its start (None: every unit is one token). Since every unit holds at least one token, the first
    copies * target units of a row reach past the last copy, so only that prefix of each row is sorted."""
    width = min(values.shape[1], int(target.max()) * copies)
    ordered = _sorted_prefix(values, width)
    present = ordered < _ABSENT
    flat = ordered & ((1 << _POSITION_BITS) - 1)
    if sizes is None:  # single tokens: the midpoint rule is rank // target
        rank = np.cumsum(present, axis=1) - 1
        pick = np.flatnonzero(present & (rank < copies * target[:, None]))
        rank = rank.reshape(-1).take(pick)
        copy = rank // target.take(pick // width) if copies > 1 else np.zeros_like(rank)
        return SparseSelection(flat.reshape(-1).take(pick), length, copy, rank)
    size = sizes.take(flat)
    size *= present
    twice_target = 2 * target[:, None]
    twice_midpoint = 2 * np.cumsum(size, axis=1) - size  # 2 * (tokens before the unit) + its size
    # Absent entries sit after every unit of their row, where the running count is the row's whole count
    # n >= target, so with one copy they fall out by themselves.
    chosen = twice_midpoint < copies * twice_target
    if copies > 1:
        chosen &= present
    pick = np.flatnonzero(chosen)
    copy = None if copies == 1 else \
        twice_midpoint.reshape(-1).take(pick) // twice_target.reshape(-1).take(pick // width)
    return _expand_units(flat.reshape(-1).take(pick), size.reshape(-1).take(pick), copy, length)


def _expand_units(starts: np.ndarray, size: np.ndarray, copy: np.ndarray | None, length: int) -> SparseSelection:
    """Chosen units (flat start, size in tokens, copy or None for all copy 0) as their tokens."""
    flat = np.repeat(starts - (np.cumsum(size) - size), size) + np.arange(int(size.sum()))
    copy = np.zeros(len(flat), dtype=np.int64) if copy is None else np.repeat(copy, size)
    return SparseSelection(flat, length, copy, np.empty(0, dtype=np.int64))


def _check_batch_size(maskable: np.ndarray) -> None:
    if maskable.size >= 1 << _POSITION_BITS:
        raise ConfigError(f"a batch of {maskable.size:,} tokens is too large to mask at once (the limit is "
                          f"{1 << _POSITION_BITS:,}); use smaller micro-batches")


def token_selection(maskable, rate: float, copies: int, sampling: str, generator,
                    counts: np.ndarray | None = None) -> SparseSelection:
    """Single-token units. `exact`: in each row the copies * target tokens with the smallest random keys, in
    key order, fill copy 0, then copy 1, ... (rank = place in that order); `bernoulli`: each token with
    probability copies * rate, in copy floor(u / rate).

    One key per position, one row-wise sort (a partition first when the need is a small share of the row)
    of values that carry key and position together, so no index arrays are sorted or gathered."""
    maskable = as_array(maskable)
    rng = numpy_rng(generator)
    batch, length = maskable.shape
    _check_batch_size(maskable)
    keys = random_keys(batch * length, rng)
    if sampling == "bernoulli":
        flat = np.flatnonzero(_bernoulli_chosen(keys, rate * copies).reshape(batch, length) & maskable)
        copy = _bernoulli_copy(keys.take(flat), rate, copies)
        return SparseSelection(flat, length, copy, np.zeros_like(copy))
    n = np.add.reduce(maskable, axis=1, dtype=np.int64) if counts is None else as_array(counts)
    values = np.where(maskable.reshape(-1), sort_values(np.arange(batch * length), keys), _ABSENT)
    return exact_units(values.reshape(batch, length), None, target_counts(n, rate), copies, length)


def rank_within_rows(rows: np.ndarray, batch: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rank (0, 1, ...) of every element among the elements of its row."""
    composite = (rows << 32) | (random_keys(len(rows), rng) >> np.uint64(32)).view(np.int64)
    order = np.argsort(composite, kind="stable")
    found = np.bincount(rows, minlength=batch)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order)) - (np.cumsum(found) - found).take(rows.take(order))
    return rank


def unit_selection(unit_starts, maskable, counts, rate: float, copies: int, sampling: str,
                   generator) -> SparseSelection:
    """Multi-token units that are never cut (whole words, PMI n-grams): the same rule as `assign_copies`
    (midpoint in key order, over-long units last), on the list of units.

    The units come from one compaction of the unit boundaries (each unit runs from its start to the next
    boundary) and draw one key each; exact sampling sorts each row's unit values (`exact_units`), Bernoulli
    keeps each unit with probability copies * rate. The chosen units are expanded back to tokens with
    `np.repeat`."""
    unit_starts, maskable, counts = as_array(unit_starts), as_array(maskable), as_array(counts)
    rng = numpy_rng(generator)
    batch, length = maskable.shape
    _check_batch_size(maskable)
    bounds = np.flatnonzero(unit_starts | ~maskable)  # every unit start and every non-maskable token
    following = np.empty_like(bounds)
    following[:-1] = bounds[1:]
    following[-1:] = batch * length
    is_unit = unit_starts.reshape(-1).take(bounds)
    starts, following = bounds[is_unit], following[is_unit]
    rows = starts // length
    size = np.minimum(following, (rows + 1) * length) - starts
    keys = random_keys(len(starts), rng)
    if sampling == "bernoulli":
        chosen = np.flatnonzero(_bernoulli_chosen(keys, rate * copies))
        starts, size = starts.take(chosen), size.take(chosen)
        return _expand_units(starts, size, _bernoulli_copy(keys.take(chosen), rate, copies), length)
    target = target_counts(counts, rate)
    values = np.full(batch * length, _ABSENT, dtype=np.int64)
    values[starts] = sort_values(starts, keys, size > target.take(rows))
    sizes = np.zeros(batch * length, dtype=np.int64)
    sizes[starts] = size
    return exact_units(values.reshape(batch, length), sizes, target, copies, length)


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


def ngram_probabilities(max_ngram: int) -> np.ndarray:
    """ALBERT's n-gram length distribution: p(n) ∝ 1/n for n = 1..max_ngram (6/11, 3/11, 2/11 for 3)."""
    weights = 1.0 / np.arange(1, max_ngram + 1)
    return weights / weights.sum()


@dataclass
class NgramChoices:
    """The n-grams `ngram_choices` accepted: row, first word (index within the row), length in words and
    in tokens, and copy, in the order they were accepted."""

    rows: np.ndarray
    word: np.ndarray
    n: np.ndarray
    size: np.ndarray
    copy: np.ndarray


def _row_words(word_starts: np.ndarray, maskable: np.ndarray):
    """Every row's words, compacted: (rows, flat starts, sizes in tokens, index within the row, words per row).
    A word runs from its start to the next word start or non-maskable token."""
    batch, length = maskable.shape
    bounds = np.flatnonzero(word_starts | ~maskable)
    following = np.empty_like(bounds)
    following[:-1] = bounds[1:]
    following[-1:] = batch * length
    is_word = word_starts.reshape(-1).take(bounds)
    starts, following = bounds[is_word], following[is_word]
    rows = starts // length
    size = np.minimum(following, (rows + 1) * length) - starts
    per_row = np.bincount(rows, minlength=batch)
    column = np.arange(len(starts)) - (np.cumsum(per_row) - per_row).take(rows)
    return rows, starts, size, column, per_row


def ngram_choices(word_starts, maskable, counts, rate: float, copies: int, generator,
                  max_ngram: int = 3) -> tuple[NgramChoices, tuple]:
    """ALBERT's n-gram choice (`create_masked_lm_predictions` in google-research/albert), per row:

    the row's words are visited in a random order; at word w an n-gram length n is drawn with p(n) ∝ 1/n
    over the lengths that fit in the row (n ≤ max_ngram and w + n ≤ words); while the n-gram's tokens
    would take the row past its budget, n shrinks by one word (skipped when even one word does not fit);
    an n-gram that overlaps one already chosen is skipped; the walk stops once the budget is reached. The
    budget is copies · round(rate · maskable tokens); an accepted n-gram goes to copy floor(midpoint /
    target) of its centre in the running count. Returns the choices and the word table (rows, flat starts,
    sizes, column, words per row) they index.
    """
    word_starts, maskable, counts = as_array(word_starts), as_array(maskable), as_array(counts)
    rng = numpy_rng(generator)
    batch, _ = maskable.shape
    rows, starts, size, column, per_row = _row_words(word_starts, maskable)
    width = int(per_row.max()) if len(per_row) else 0
    sizes = np.zeros((batch, width + max_ngram), dtype=np.int64)
    sizes[rows, column] = size
    prefix = np.zeros((batch, width + max_ngram + 1), dtype=np.int64)
    np.cumsum(sizes, axis=1, out=prefix[:, 1:])
    keys = rng.random((batch, width))
    keys[np.arange(width)[None, :] >= per_row[:, None]] = 2.0
    order = np.argsort(keys, axis=1, kind="stable")
    # n ~ p restricted to the lengths that fit: m = min(max_ngram, words left from w)
    uniforms = rng.random((batch, width))
    available = np.clip(per_row[:, None] - np.arange(width)[None, :], 1, max_ngram)
    probabilities = ngram_probabilities(max_ngram)
    drawn = np.ones((batch, width), dtype=np.int64)
    for m in range(2, max_ngram + 1):
        cdf = np.cumsum(probabilities[:m]) / probabilities[:m].sum()
        steps = (uniforms[..., None] >= cdf[None, None, :-1]).sum(axis=2)
        drawn = np.where(available == m, 1 + steps, drawn)
    target = target_counts(counts, rate)
    budget = target * copies
    total = np.zeros(batch, dtype=np.int64)
    covered = np.zeros((batch, width + max_ngram), dtype=np.bool_)
    offsets = np.arange(max_ngram)
    found = []
    for k in range(width):
        active = np.flatnonzero((total < budget) & (k < per_row))
        if not len(active):
            break
        word = order[active, k]
        n = drawn[active, word]
        room = budget[active] - total[active]
        ngram_size = prefix[active, word + n] - prefix[active, word]
        for _ in range(max_ngram - 1):  # shrink by one word while it does not fit
            shrink = (n > 1) & (ngram_size > room)
            n = n - shrink
            ngram_size = prefix[active, word + n] - prefix[active, word]
        inside = offsets[None, :] < n[:, None]
        overlap = (covered[active[:, None], word[:, None] + offsets[None, :]] & inside).any(axis=1)
        ok = (ngram_size <= room) & ~overlap
        accepted = active[ok]
        covered[accepted[:, None], word[ok][:, None] + offsets[None, :]] |= inside[ok]
        found.append((accepted, word[ok], n[ok], ngram_size[ok], total[accepted]))
        total[accepted] += ngram_size[ok]
    if found:
        acc_rows, word, n, ngram_size, before = (np.concatenate(parts) for parts in zip(*found))
    else:
        acc_rows = word = n = ngram_size = before = np.zeros(0, dtype=np.int64)
    copy = np.zeros(len(acc_rows), dtype=np.int64) if copies == 1 else np.minimum(
        (2 * before + ngram_size) // (2 * target.take(acc_rows)), copies - 1)
    return NgramChoices(acc_rows, word, n, ngram_size, copy), (rows, starts, size, column, per_row)


def ngram_selection(word_starts, maskable, counts, rate: float, copies: int, generator,
                    max_ngram: int = 3) -> SparseSelection:
    """The tokens of ALBERT's n-grams (`ngram_choices`), every word of each n-gram whole."""
    maskable = as_array(maskable)
    _check_batch_size(maskable)
    choices, (rows, starts, size, _, per_row) = ngram_choices(word_starts, maskable, counts, rate, copies,
                                                              generator, max_ngram)
    first = np.cumsum(per_row) - per_row
    repeat = choices.n
    word_index = np.repeat(first.take(choices.rows) + choices.word, repeat) + \
        (np.arange(int(repeat.sum())) - np.repeat(np.cumsum(repeat) - repeat, repeat))
    return _expand_units(starts.take(word_index), size.take(word_index), np.repeat(choices.copy, repeat),
                         maskable.shape[1])
