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

The hot paths (token units; whole words and PMI n-grams, which are never cut) work on coordinates instead
of [B, L] tensors: int32 keys drawn two per 64-bit generator call, a per-row key cut that keeps only the
likely candidates (need plus a 4-sigma margin), then either one `kthvalue` per batch (one copy, no
prediction subset; rows padded so one k serves all) or one 1-D stable sort of `(row << 32) | key`; whole
words are compacted to a list of units first and expanded back with `repeat_interleave`. Whenever the
candidates could be short, the same computation runs over everything, so the shortcut never changes the
result (property tests check each shortcut against its full version). SpanBERT spans keep the dense path.

Nothing here loops over tokens or sequences; each step is a sort, a cumulative sum, a scatter or a gather.
"""

from __future__ import annotations

import math
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
                       specials: torch.Tensor, plain: torch.Tensor | None = None) -> torch.Tensor:
    """Bool [B, L]: attended tokens that are not special (CLS, SEP, PAD, MASK, sentinels...).

    `plain` (= ~specials, cached by the objective) saves a full-size negation; the lookup is one
    `index_select` over the flattened ids (several times cheaper than advanced indexing)."""
    low, high = input_ids.aminmax()
    if int(high) >= len(specials) or int(low) < 0:
        raise ConfigError(f"input_ids hold ids outside the vocabulary [0, {len(specials)}); the objective's "
                          "vocab_size does not match the tokenizer", "vocab_size")
    table = (~specials if plain is None else plain).to(input_ids.device)
    maskable = table.index_select(0, input_ids.reshape(-1)).view(input_ids.shape)
    if attention_mask is not None:
        maskable &= attention_mask if attention_mask.dtype == torch.bool else attention_mask.bool()
    return maskable


def check_every_row_maskable(maskable: torch.Tensor) -> torch.Tensor:
    """Per-row count of maskable tokens; a row with none is an error (it cannot be given a target)."""
    counts = maskable.count_nonzero(dim=1)
    if counts.numel() and not bool(counts.all()):
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
    flat: torch.Tensor | None = None  # rows * L + cols, when the selector has it at hand


def random_keys(count: int, generator: torch.Generator, device) -> torch.Tensor:
    """`count` independent uniform int32 keys (the full int32 range): one 64-bit draw makes two keys, which
    halves the generator's work against `torch.rand` (the largest full-size cost of token masking)."""
    raw = torch.empty((count + 1) // 2, dtype=torch.int64, device=device).random_(-(2 ** 63), None,
                                                                                   generator=generator)
    return raw.view(torch.int32)[:count]


_KEY_SPAN = 2 ** 32
_KEY_MIN = -(2 ** 31)
_KEY_MAX = 2 ** 31 - 1


def key_threshold(fraction: torch.Tensor) -> torch.Tensor:
    """int32 threshold t with P(key <= t) ~ fraction (clamped to [0, 1]; fraction >= 1 admits every key)."""
    t = (fraction.double() * _KEY_SPAN).floor_().add_(_KEY_MIN - 1)
    return t.clamp_(_KEY_MIN, _KEY_MAX).to(torch.int32)


def token_selection(maskable: torch.Tensor, rate: float, copies: int, sampling: str,
                    generator: torch.Generator, margin: float = 4.0, counts: torch.Tensor | None = None,
                    ranked: bool = True) -> SparseSelection:
    """Single-token units, as coordinates. `exact`: in each row the copies * target tokens with the smallest
    random keys, in key order, fill copy 0, then copy 1, ...; `bernoulli`: copy floor(u / rate).

    Exact sampling ranks only the tokens whose key falls under a per-row threshold (the expected need plus a
    4-sigma margin): one random draw, one comparison and one compaction are the only full-size work; the
    candidates (row-major already) are ranked by a single 1-D stable sort of (row << 32 | key). A row whose
    candidates fall short (probability ~1e-5) sends the batch through the same ranking over every maskable
    token, which gives the identical result (the test suite checks this).

    `ranked=False` (one copy, no prediction subset: the common case) skips the ranking: a per-row k-th
    smallest key (`kthvalue` on a small [B, ~need] block) is the cut, and the same tokens come out in
    position order with rank 0.
    """
    batch, length = maskable.shape
    device = maskable.device
    keys = random_keys(batch * length, generator, device)
    if sampling == "bernoulli":
        cut = min(_KEY_MAX, max(_KEY_MIN, math.floor(rate * copies * _KEY_SPAN) + _KEY_MIN - 1))
        flat = ((keys <= cut).view(batch, length) & maskable).view(-1).nonzero().squeeze(1)
        rows = torch.div(flat, length, rounding_mode="floor")
        if copies == 1:
            copy = torch.zeros_like(flat)
        else:
            u = keys.index_select(0, flat).to(torch.int64) - _KEY_MIN
            copy = torch.div(u, rate * _KEY_SPAN, rounding_mode="floor").long().clamp_(max=copies - 1)
        return SparseSelection(rows, flat - rows * length, copy, torch.zeros_like(copy), flat)
    n = maskable.count_nonzero(dim=1) if counts is None else counts
    target = target_counts(n, rate)
    need = (target * copies).minimum(n)
    if not ranked and copies == 1 and length <= DENSE_CUT_MAX_LENGTH:
        dense = _dense_smallest_per_row(keys.view(batch, length), maskable, need)
        if dense is not None:
            return dense
    wanted = need + margin * need.double().sqrt() + 2 * margin
    candidates = (keys.view(batch, length) <= key_threshold(wanted / n.clamp(min=1)).view(-1, 1)) & maskable
    flat = candidates.view(-1).nonzero().squeeze(1)
    rows = torch.div(flat, length, rounding_mode="floor")
    found = torch.bincount(rows, minlength=batch)
    if bool((found < need).any()):
        flat = maskable.view(-1).nonzero().squeeze(1)
        rows = torch.div(flat, length, rounding_mode="floor")
        found = n
    if not ranked and copies == 1:
        return _smallest_per_row(keys, flat, rows, found, need, length)
    # rows are non-decreasing and the sort keeps rows together, so rows stay valid after the reordering
    composite = (rows << 32) | (keys.index_select(0, flat).to(torch.int64) - _KEY_MIN)
    flat = flat.index_select(0, composite.sort(stable=True).indices)
    rank = torch.arange(flat.shape[0], device=device) - (found.cumsum(0) - found).index_select(0, rows)
    keep = (rank < need.index_select(0, rows)).nonzero().squeeze(1)
    flat, rows, rank = flat.index_select(0, keep), rows.index_select(0, keep), rank.index_select(0, keep)
    copy = torch.zeros_like(rank) if copies == 1 else torch.div(rank, target.index_select(0, rows),
                                                                 rounding_mode="floor")
    return SparseSelection(rows, flat - rows * length, copy, rank, flat)


DENSE_CUT_MAX_LENGTH = 256  # up to here one kthvalue over whole rows beats compacting candidates first


def _dense_smallest_per_row(keys: torch.Tensor, maskable: torch.Tensor, need: torch.Tensor) -> SparseSelection | None:
    """Short rows: each row's `need` smallest keys via one `kthvalue` over [B, L + pad] (pads as in
    `_smallest_per_row`); fewer, larger ops than the candidate path. None when an int32 key tie at a cut
    (probability ~1e-7 per row) would select too many: the caller then ranks, breaking ties by position."""
    batch, length = keys.shape
    most = int(need.max())
    pad = most - int(need.min())
    block = torch.empty((batch, length + pad), dtype=torch.int32, device=keys.device)
    high = torch.tensor(_KEY_MAX, dtype=torch.int32, device=keys.device)
    torch.where(maskable, keys, high, out=block[:, :length])
    if pad:
        room = torch.arange(pad, device=keys.device) < (most - need).view(-1, 1)
        torch.where(room, torch.tensor(_KEY_MIN, dtype=torch.int32, device=keys.device), high,
                    out=block[:, length:])
    cut = block.kthvalue(most, dim=1).values
    chosen = (keys <= cut.view(-1, 1)) & maskable
    if bool((chosen.count_nonzero(dim=1) != need).any()):
        return None
    flat = chosen.view(-1).nonzero().squeeze(1)
    rows = torch.div(flat, length, rounding_mode="floor")
    zeros = torch.zeros_like(flat)
    return SparseSelection(rows, flat - rows * length, zeros, zeros, flat)


def _smallest_per_row(keys: torch.Tensor, flat: torch.Tensor, rows: torch.Tensor, found: torch.Tensor,
                      need: torch.Tensor, length: int) -> SparseSelection:
    """Among row-major candidates, each row's `need` smallest keys, ties broken by position (as the stable
    sort does). The candidates go into a [B, width + pad] block where row b also gets max(need) - need[b]
    pads below every key, so one `kthvalue(max(need))` gives every row its own cut."""
    batch, device = found.shape[0], flat.device
    cols = flat - rows * length
    values = (keys.index_select(0, flat).to(torch.int64) << 32) + cols  # unique within a row
    width, most = int(found.max()), int(need.max())
    pad = most - int(need.min())
    slot = torch.arange(flat.shape[0], device=device) - (found.cumsum(0) - found).index_select(0, rows)
    block = torch.full((batch, width + pad), torch.iinfo(torch.int64).max, dtype=torch.int64, device=device)
    block.view(-1).index_copy_(0, rows * (width + pad) + slot, values)
    if pad:
        block[:, width:].masked_fill_(torch.arange(pad, device=device) < (most - need).view(-1, 1),
                                      torch.iinfo(torch.int64).min)
    cut = block.kthvalue(most, dim=1).values
    keep = (values <= cut.index_select(0, rows)).nonzero().squeeze(1)
    flat, rows, cols = flat.index_select(0, keep), rows.index_select(0, keep), cols.index_select(0, keep)
    zeros = torch.zeros_like(flat)
    return SparseSelection(rows, cols, zeros, zeros, flat)


def unit_selection(unit_starts: torch.Tensor, maskable: torch.Tensor, counts: torch.Tensor, rate: float,
                   copies: int, sampling: str, generator: torch.Generator, margin: float = 4.0) -> SparseSelection:
    """Multi-token units that are never cut (whole words, PMI n-grams), as coordinates: the same choice as
    `assign_copies` (midpoint rule in key order, over-long units last), computed on a list of units.

    The units come from one compaction of the unit boundaries (each unit runs from its start to the next
    boundary), draw one key each, and exact sampling ranks only the units whose key falls under a per-row
    threshold sized for the token need plus a margin: whenever those candidates hold at least the need in
    tokens, every later unit in key order lies beyond the last copy, so the result equals the full ranking
    (else the batch takes the full ranking). The chosen units are expanded back to tokens with
    `repeat_interleave`; nothing after the boundary compaction is full-size.
    """
    batch, length = maskable.shape
    device = maskable.device
    grid = (unit_starts | ~maskable).nonzero()  # every unit start and every non-maskable token, row-major
    bound_rows = grid[:, 0]
    bounds = bound_rows * length + grid[:, 1]
    following = torch.cat([bounds[1:], bounds.new_full((1,), batch * length)])
    is_unit = unit_starts.view(-1).index_select(0, bounds)
    keys = random_keys(bounds.shape[0], generator, device)
    target = target_counts(counts, rate)

    def units(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(flat start, row, size in tokens) of the units at these boundary indices."""
        pos, rows = bounds.index_select(0, index), bound_rows.index_select(0, index)
        return pos, rows, following.index_select(0, index).minimum((rows + 1) * length) - pos

    if sampling == "bernoulli":
        cut = min(_KEY_MAX, max(_KEY_MIN, math.floor(rate * copies * _KEY_SPAN) + _KEY_MIN - 1))
        chosen = ((keys <= cut) & is_unit).nonzero().squeeze(1)
        pos, rows, size = units(chosen)
        if copies == 1:
            copy = torch.zeros_like(chosen)
        else:
            u = keys.index_select(0, chosen).to(torch.int64) - _KEY_MIN
            copy = torch.div(u, rate * _KEY_SPAN, rounding_mode="floor").long().clamp_(max=copies - 1)
    else:
        need = target * copies
        wanted = need + margin * (2 * need.double()).sqrt() + 2 * margin
        row_cut = key_threshold(wanted / counts.clamp(min=1)).index_select(0, bound_rows)
        chosen = ((keys <= row_cut) & is_unit).nonzero().squeeze(1)
        pos, rows, size = units(chosen)
        short = size <= target.index_select(0, rows)
        held = torch.zeros_like(counts).index_add_(0, rows, size * short)
        if bool((held < need).any()):
            chosen = is_unit.nonzero().squeeze(1)
            pos, rows, size = units(chosen)
            short = size <= target.index_select(0, rows)
        # key order within each row, units longer than the per-copy target last (rows stay grouped)
        composite = (rows << 33) | ((~short).to(torch.int64) << 32) | (keys.index_select(0, chosen).to(torch.int64)
                                                                       - _KEY_MIN)
        order = composite.sort(stable=True).indices
        pos, rows, size = pos.index_select(0, order), rows.index_select(0, order), size.index_select(0, order)
        ends = size.cumsum(0)
        row_totals = torch.zeros_like(counts).index_add_(0, rows, size)
        before = ends - size - (row_totals.cumsum(0) - row_totals).index_select(0, rows)
        copy = torch.div(2 * before + size, 2 * target.index_select(0, rows), rounding_mode="floor")
        keep = (copy < copies).nonzero().squeeze(1)
        pos, rows, size, copy = (t.index_select(0, keep) for t in (pos, rows, size, copy))
    unit_of_token = torch.repeat_interleave(torch.arange(pos.shape[0], device=device), size)
    flat = (pos - (size.cumsum(0) - size)).index_select(0, unit_of_token) + torch.arange(unit_of_token.shape[0],
                                                                                       device=device)
    token_rows = rows.index_select(0, unit_of_token)
    return SparseSelection(token_rows, flat - token_rows * length, copy.index_select(0, unit_of_token),
                           torch.empty(0, dtype=torch.long, device=device), flat)


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
