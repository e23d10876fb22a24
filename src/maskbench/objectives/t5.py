"""The unsupervised objectives of the T5 study (Raffel et al. 2020, Tables 3-7), for the encoder-decoder.

Inputs are raw token windows (`PretrainBatches(..., add_special=False)`), right-padded if at all. Every
objective appends EOS to both the encoder input and the decoder target; `labels` is the target padded with
-100 and `attention_mask` covers the (often shorter) new input. All objectives are vectorised: the ragged
outputs are assembled with one cumulative sum and one scatter (`assemble`), never a loop per row.

- `prefix_lm`: split at a uniformly random point; the encoder reads the prefix, the decoder the rest.
- `bert_style`: corrupt `noise_density` of the tokens (90% mask, 10% random token); target = original text.
- `deshuffle`: shuffle the tokens; target = original order.
- `iid_mask` (MASS-style): corrupted tokens replaced by the mask; target = original text.
- `replace_spans`: i.i.d. corruption; the input is T5's `noise_span_to_unique_sentinel` (each run of
  corrupted tokens → one sentinel), the target its `nonnoise_span_to_unique_sentinel` (each run of kept
  tokens → one sentinel), then EOS. A row that starts with noise therefore starts its target with tokens,
  and a row that ends with kept tokens ends its target with a sentinel, exactly as the reference does.
- `drop`: corrupted tokens removed from the input (`drop_noise_tokens`); target = the dropped tokens.
- `span_corruption`: T5's default: exact noise and span counts, random partitions of the noise and non-noise
  lengths interleaved starting with non-noise, sentinels in order.

The i.i.d. objectives draw their noise as T5's `iid_noise_mask` does, each token independently with
probability `noise_density` (`sampling = "bernoulli"`, the default); `sampling = "exact"` corrupts exactly
round(density · n) tokens per row instead (not T5's rule). T5 itself marks "masked" tokens with its first
sentinel (`<extra_id_0>`); `mask_with = "mask"` uses the tokenizer's [MASK] instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..config import check_choice, check_range
from ..errors import ConfigError
from . import selection
from .mlm import IGNORE_INDEX, apply_replacement, check_split, check_wiring, replacement_pool


def compute_input_and_target_lengths(inputs_length: int, noise_density: float,
                                     mean_noise_span_length: float) -> tuple[int, int]:
    """(raw tokens to read, target length) so that span corruption yields exactly `inputs_length` inputs.

    The same arithmetic as T5's `random_spans_helper` and nanoT5: the largest raw length whose corrupted
    input (non-noise tokens + one sentinel per span + EOS) still fits, so no padding is wasted.
    """
    def lengths(tokens_length: int) -> tuple[int, int]:
        num_noise = int(round(tokens_length * noise_density))
        num_nonnoise = tokens_length - num_noise
        num_spans = int(round(num_noise / mean_noise_span_length))
        return num_nonnoise + num_spans + 1, num_noise + num_spans + 1

    if inputs_length < 2:
        raise ConfigError(f"inputs_length must be at least 2, got {inputs_length}", "inputs_length")
    tokens_length = inputs_length
    while lengths(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    _, targets_length = lengths(tokens_length)
    if noise_density == 0.5 and targets_length > inputs_length:
        tokens_length -= 1
        targets_length -= 1
    return tokens_length, targets_length


def span_corruption_counts(length: torch.Tensor, noise_density: float,
                           mean_span_length: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(num_noise, num_spans) per row, as in T5's `random_spans_noise_mask`.

    num_noise = round(L * noise_density) kept within [1, L - 1]; num_spans = round(num_noise / mean) at
    least 1 (and, for degenerate short rows only, at most min(num_noise, L - num_noise) so every span and
    every gap holds a token).
    """
    length = length.clamp(min=2)
    num_noise = torch.round(length.double() * noise_density).long()
    num_noise = torch.minimum(num_noise.clamp(min=1), length - 1)
    num_spans = torch.round(num_noise.double() / mean_span_length).long().clamp(min=1)
    num_spans = torch.minimum(num_spans, torch.minimum(num_noise, length - num_noise))
    return num_noise, num_spans


def random_segmentation(num_items: torch.Tensor, num_segments: torch.Tensor, width: int,
                        generator: torch.Generator) -> torch.Tensor:
    """Segment lengths [B, width]: num_items split into num_segments non-empty parts, uniformly at random
    (T5's `_random_segmentation`: a random subset of the num_items - 1 gaps starts a new segment)."""
    batch = num_items.shape[0]
    device = num_items.device
    positions = torch.arange(width, device=device)
    gaps = positions[: width - 1].expand(batch, -1) < (num_items - 1).view(-1, 1)
    cuts = selection.exact_subset(gaps, num_segments - 1, generator)
    first_in_segment = torch.nn.functional.pad(cuts, (1, 0))
    segment = first_in_segment.long().cumsum(dim=1)
    items = (positions < num_items.view(-1, 1)).long()
    return torch.zeros(batch, width, dtype=torch.long, device=device).scatter_add_(1, segment, items)


def span_corruption_mask(valid: torch.Tensor, noise_density: float, mean_span_length: float,
                         generator: torch.Generator) -> torch.Tensor:
    """Bool [B, L] noise mask with T5's span arithmetic, per row over its valid (leading) tokens."""
    batch, width = valid.shape
    width = max(width, 2)
    length = valid.sum(dim=1).clamp(min=2)
    num_noise, num_spans = span_corruption_counts(length, noise_density, mean_span_length)
    noise_lengths = random_segmentation(num_noise, num_spans, width, generator)
    nonnoise_lengths = random_segmentation(length - num_noise, num_spans, width, generator)
    interleaved = torch.stack([nonnoise_lengths, noise_lengths], dim=2).view(batch, 2 * width)
    ends = interleaved.cumsum(dim=1)
    positions = torch.arange(valid.shape[1], device=valid.device).expand(batch, -1).contiguous()
    span_number = torch.searchsorted(ends, positions, right=True)
    return (span_number % 2 == 1) & valid


def iid_noise_mask(valid: torch.Tensor, noise_density: float, sampling: str,
                   generator: torch.Generator) -> torch.Tensor:
    """Bool [B, L]: `bernoulli` (T5's `iid_noise_mask`) each valid token with probability density; `exact`
    exactly round(density * n) tokens per row."""
    if sampling == "bernoulli":
        return valid & (torch.rand(valid.shape, generator=generator, device=valid.device) < noise_density)
    counts = selection.target_counts(valid.sum(dim=1), noise_density)
    return selection.exact_subset(valid, counts, generator)


def assemble(tokens: torch.Tensor, emit_token: torch.Tensor, sentinels: torch.Tensor | None,
             emit_sentinel: torch.Tensor | None, eos_id: int, fill: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged rows → padded [B, W]: each position emits an optional sentinel then an optional token, in
    order, then EOS; the rest is `fill`. Returns (values, lengths including EOS)."""
    batch, width = tokens.shape
    first = emit_sentinel.long() if emit_sentinel is not None else torch.zeros_like(tokens)
    count = first + emit_token.long()
    ends = count.cumsum(dim=1)
    lengths = ends[:, -1] + 1 if width else torch.ones(batch, dtype=torch.long, device=tokens.device)
    out_width = int(lengths.max()) if batch else 1
    out = torch.full((batch, out_width + 1), fill, dtype=tokens.dtype, device=tokens.device)
    trash = out_width
    starts = ends - count
    if emit_sentinel is not None:
        out.scatter_(1, torch.where(emit_sentinel, starts, trash), sentinels)
    out.scatter_(1, torch.where(emit_token, starts + first, trash), tokens)
    out.scatter_(1, (lengths - 1).view(-1, 1), torch.full((batch, 1), eos_id, dtype=tokens.dtype,
                                                          device=tokens.device))
    return out[:, :out_width], lengths


def _attention(lengths: torch.Tensor, width: int) -> torch.Tensor:
    return (torch.arange(width, device=lengths.device) < lengths.view(-1, 1)).long()


def _valid(batch: dict) -> torch.Tensor:
    ids = batch["input_ids"]
    mask = batch.get("attention_mask")
    return torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()


@dataclass(kw_only=True)
class Seq2SeqObjective:
    """Common wiring of the T5 objectives: the vocabulary, EOS and padding ids."""

    NAME = ""
    DESCRIPTION = ""
    WIRING = ("vocab_size", "eos_id", "pad_id")

    vocab_size: int
    eos_id: int
    pad_id: int

    def __post_init__(self) -> None:
        check_wiring(self.vocab_size, {"eos_id": self.eos_id, "pad_id": self.pad_id}, [])

    batch_multiplier = 1
    sentence_task = None

    @property
    def description(self) -> str:
        return self.DESCRIPTION

    def summary(self) -> str:
        return f"{self.NAME}: {self.DESCRIPTION}"

    def _output(self, batch: dict, inputs: torch.Tensor, input_lengths: torch.Tensor, labels: torch.Tensor,
                noise: torch.Tensor | None, return_noise_mask: bool) -> dict:
        out = {key: value for key, value in batch.items() if key not in ("word_starts", "word_ids",
                                                                         "token_type_ids")}
        out["input_ids"] = inputs
        out["attention_mask"] = _attention(input_lengths, inputs.shape[1])
        out["labels"] = labels
        if return_noise_mask:
            out["noise_mask"] = noise
        return out

    def _pack(self, batch: dict, input_tokens: torch.Tensor, emit_input: torch.Tensor,
              target_tokens: torch.Tensor, emit_target: torch.Tensor, noise: torch.Tensor | None,
              return_noise_mask: bool) -> dict:
        inputs, input_lengths = assemble(input_tokens, emit_input, None, None, self.eos_id, self.pad_id)
        labels, _ = assemble(target_tokens, emit_target, None, None, self.eos_id, IGNORE_INDEX)
        return self._output(batch, inputs, input_lengths, labels, noise, return_noise_mask)


@dataclass(kw_only=True)
class PrefixLM(Seq2SeqObjective):
    NAME = "prefix_lm"
    DESCRIPTION = "prefix LM (T5): split at a random point; encoder reads the prefix, decoder predicts the rest"

    def __call__(self, batch: dict, generator: torch.Generator, *, return_noise_mask: bool = False) -> dict:
        ids = batch["input_ids"]
        valid = _valid(batch)
        n = valid.sum(dim=1)
        u = torch.rand(n.shape, generator=generator, device=ids.device, dtype=torch.float64)
        split = 1 + torch.floor(u * (n - 1).clamp(min=1)).long()
        split = torch.minimum(split, n.clamp(min=1))
        positions = torch.arange(ids.shape[1], device=ids.device)
        in_prefix = positions < split.view(-1, 1)
        suffix = valid & ~in_prefix
        shifted = ids.gather(1, (positions + split.view(-1, 1)).clamp(max=ids.shape[1] - 1))
        target_valid = positions < (n - split).view(-1, 1)
        return self._pack(batch, ids, in_prefix & valid, shifted, target_valid, suffix, return_noise_mask)


@dataclass(kw_only=True)
class Deshuffle(Seq2SeqObjective):
    NAME = "deshuffle"
    DESCRIPTION = "deshuffling (T5): the encoder reads the tokens shuffled, the decoder the original order"

    def __call__(self, batch: dict, generator: torch.Generator, *, return_noise_mask: bool = False) -> dict:
        ids = batch["input_ids"]
        valid = _valid(batch)
        keys = torch.rand(ids.shape, generator=generator, device=ids.device)
        keys.masked_fill_(~valid, 2.0)
        shuffled = ids.gather(1, keys.argsort(dim=1))
        n = valid.sum(dim=1, keepdim=True)
        leading = torch.arange(ids.shape[1], device=ids.device) < n
        return self._pack(batch, shuffled, leading, ids, valid, valid, return_noise_mask)


@dataclass(kw_only=True)
class NoiseObjective(Seq2SeqObjective):
    """Objectives that corrupt an i.i.d. share `noise_density` of the tokens."""

    noise_density: float = 0.15
    sampling: str = "bernoulli"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("noise_density", self.noise_density, 0.0, 1.0, low_open=True, high_open=True)
        check_choice("sampling", self.sampling, ("bernoulli", "exact"))

    def noise(self, batch: dict, generator: torch.Generator) -> torch.Tensor:
        return iid_noise_mask(_valid(batch), self.noise_density, self.sampling, generator)


@dataclass(kw_only=True)
class MaskingMixin:
    """Which token marks a masked position: T5's first sentinel (default) or the tokenizer's [MASK]."""

    sentinel_ids: list[int] = field(default_factory=list)
    mask_id: int | None = None
    mask_with: str = "sentinel"

    def mask_token(self) -> int:
        check_choice("mask_with", self.mask_with, ("sentinel", "mask"))
        if self.mask_with == "sentinel":
            if not self.sentinel_ids:
                raise ConfigError("mask_with = \"sentinel\" needs sentinel_ids (the tokenizer has no <extra_id_*>); "
                                  "set mask_with = \"mask\"", "sentinel_ids")
            return self.sentinel_ids[0]
        if self.mask_id is None:
            raise ConfigError("mask_with = \"mask\" needs mask_id", "mask_id")
        return self.mask_id


@dataclass(kw_only=True)
class BertStyle(NoiseObjective, MaskingMixin):
    NAME = "bert_style"
    DESCRIPTION = "BERT-style (T5): corrupt 15% (90% mask, 10% random token); target = the whole original text"
    WIRING = ("vocab_size", "eos_id", "pad_id", "special_ids", "sentinel_ids", "mask_id")

    special_ids: list[int] = field(default_factory=list)
    replace: tuple[float, float, float] = (0.9, 0.1, 0.0)
    _pool: torch.Tensor = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._mask = self.mask_token()
        check_wiring(self.vocab_size, {"mask_id": self.mask_id}, list(self.special_ids) + list(self.sentinel_ids))
        self.replace = tuple(float(x) for x in self.replace)
        if len(self.replace) != 3:
            raise ConfigError(f"expected 3 shares (mask, random, keep), got {len(self.replace)}", "replace")
        check_split("replace", self.replace, "mask, random, keep")
        specials = set(self.special_ids) | set(self.sentinel_ids) | {self.eos_id, self.pad_id, self._mask}
        self._pool = replacement_pool(self.vocab_size, sorted(specials))
        if self.replace[1] > 0 and len(self._pool) == 0:
            raise ConfigError("every vocabulary id is special, so no random replacement token exists", "replace")

    def __call__(self, batch: dict, generator: torch.Generator, *, return_noise_mask: bool = False) -> dict:
        ids = batch["input_ids"]
        valid = _valid(batch)
        noise = self.noise(batch, generator)
        corrupted = apply_replacement(ids, noise, self.replace, self._mask, self._pool, generator)
        return self._pack(batch, corrupted, valid, ids, valid, noise, return_noise_mask)


@dataclass(kw_only=True)
class IidMask(NoiseObjective, MaskingMixin):
    NAME = "iid_mask"
    DESCRIPTION = "i.i.d. masking (MASS-style, T5): corrupted tokens become the mask; target = the original text"
    WIRING = ("vocab_size", "eos_id", "pad_id", "sentinel_ids", "mask_id")

    def __post_init__(self) -> None:
        super().__post_init__()
        self._mask = self.mask_token()
        check_wiring(self.vocab_size, {"mask_id": self.mask_id, "mask": self._mask}, [])

    def __call__(self, batch: dict, generator: torch.Generator, *, return_noise_mask: bool = False) -> dict:
        ids = batch["input_ids"]
        valid = _valid(batch)
        noise = self.noise(batch, generator)
        return self._pack(batch, ids.masked_fill(noise, self._mask), valid, ids, valid, noise, return_noise_mask)


@dataclass(kw_only=True)
class Drop(NoiseObjective):
    NAME = "drop"
    DESCRIPTION = "drop tokens (T5): corrupted tokens are removed from the input; target = the dropped tokens"

    def __call__(self, batch: dict, generator: torch.Generator, *, return_noise_mask: bool = False) -> dict:
        ids = batch["input_ids"]
        valid = _valid(batch)
        noise = self.noise(batch, generator)
        return self._pack(batch, ids, valid & ~noise, ids, noise, noise, return_noise_mask)


def _check_sentinels(sentinel_ids: list[int], vocab_size: int) -> None:
    if not sentinel_ids:
        raise ConfigError("this objective needs sentinel ids (<extra_id_0>, <extra_id_1>, ...); the tokenizer "
                          "has none: train one with maskbench's special tokens", "sentinel_ids")
    check_wiring(vocab_size, {}, list(sentinel_ids))
    if len(set(sentinel_ids)) != len(sentinel_ids):
        raise ConfigError("sentinel ids must be distinct", "sentinel_ids")


def _run_starts(flags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(bool [B, L] first position of each run of True, run number of each position counted from 0)."""
    previous = torch.nn.functional.pad(flags[:, :-1], (1, 0), value=False)
    starts = flags & ~previous
    return starts, starts.long().cumsum(dim=1) - 1


def spans_to_sentinels(batch: dict, noise: torch.Tensor, sentinel_ids: torch.Tensor, eos_id: int, pad_id: int,
                       name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """T5's `noise_span_to_unique_sentinel` (input) and `nonnoise_span_to_unique_sentinel` (target), then EOS.

    Input: each run of noise → the next sentinel. Target: each run of kept tokens → the next sentinel, the
    noise tokens stay. With T5's span corruption (non-noise first, noise last) the target reads "sentinel,
    the tokens it replaced" for every span; with i.i.d. noise a row may start with noise or end with kept
    tokens, and the target follows the reference there too."""
    ids = batch["input_ids"]
    valid = _valid(batch)
    noise = noise & valid
    noise_start, noise_run = _run_starts(noise)
    kept_start, kept_run = _run_starts(valid & ~noise)
    most = int(torch.maximum(noise_run[:, -1], kept_run[:, -1]).max()) + 1 if noise.numel() else 0
    if most > len(sentinel_ids):
        raise ConfigError(f"{name} needs {most} sentinels for one sequence but the vocabulary has "
                          f"{len(sentinel_ids)}; use shorter sequences, a lower noise_density or longer spans",
                          "sentinel_ids")
    table = sentinel_ids.to(ids.device)
    top = max(len(sentinel_ids) - 1, 0)
    inputs, input_lengths = assemble(ids, valid & ~noise, table[noise_run.clamp(0, top)], noise_start, eos_id,
                                     pad_id)
    labels, _ = assemble(ids, noise, table[kept_run.clamp(0, top)], kept_start, eos_id, IGNORE_INDEX)
    return inputs, input_lengths, labels


@dataclass(kw_only=True)
class ReplaceSpans(NoiseObjective):
    NAME = "replace_spans"
    DESCRIPTION = "replace corrupted spans (T5): each run of i.i.d.-corrupted tokens becomes one sentinel"
    WIRING = ("vocab_size", "eos_id", "pad_id", "sentinel_ids")

    sentinel_ids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_sentinels(self.sentinel_ids, self.vocab_size)
        self._sentinels = torch.tensor(self.sentinel_ids, dtype=torch.long)

    def __call__(self, batch: dict, generator: torch.Generator, *, return_noise_mask: bool = False) -> dict:
        noise = self.noise(batch, generator)
        inputs, lengths, labels = spans_to_sentinels(batch, noise, self._sentinels, self.eos_id, self.pad_id,
                                                     self.NAME)
        return self._output(batch, inputs, lengths, labels, noise, return_noise_mask)


@dataclass(kw_only=True)
class SpanCorruption(Seq2SeqObjective):
    NAME = "span_corruption"
    DESCRIPTION = "span corruption (T5 default): noise_density in spans of mean_span_length, sentinels in order"
    WIRING = ("vocab_size", "eos_id", "pad_id", "sentinel_ids")

    noise_density: float = 0.15
    mean_span_length: float = 3.0
    sentinel_ids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("noise_density", self.noise_density, 0.0, 1.0, low_open=True, high_open=True)
        if self.mean_span_length < 1:
            raise ConfigError(f"a span length must be at least 1 token, got {self.mean_span_length:g}",
                              "mean_span_length")
        _check_sentinels(self.sentinel_ids, self.vocab_size)
        self._sentinels = torch.tensor(self.sentinel_ids, dtype=torch.long)

    def lengths(self, inputs_length: int) -> tuple[int, int]:
        """(raw window length to read, target length) for encoder inputs of exactly `inputs_length`."""
        return compute_input_and_target_lengths(inputs_length, self.noise_density, self.mean_span_length)

    def __call__(self, batch: dict, generator: torch.Generator, *, return_noise_mask: bool = False) -> dict:
        noise = span_corruption_mask(_valid(batch), self.noise_density, self.mean_span_length, generator)
        inputs, lengths, labels = spans_to_sentinels(batch, noise, self._sentinels, self.eos_id, self.pad_id,
                                                     self.NAME)
        return self._output(batch, inputs, lengths, labels, noise, return_noise_mask)


T5_OBJECTIVES = (PrefixLM, BertStyle, Deshuffle, IidMask, ReplaceSpans, Drop, SpanCorruption)
