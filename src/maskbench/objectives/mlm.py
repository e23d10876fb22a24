"""BERT-style masked language modelling with the corruption and prediction rates decoupled.

Wettig et al. (2022), "Should You Mask 15% in Masked Language Modeling?", separate two knobs that BERT ties
together: how many tokens are *corrupted* (`mask_rate`) and how many the loss *predicts* (`predict_rate`).
With `predict_rate < mask_rate` the loss sees a random share of the corrupted tokens only; with
`predict_rate > mask_rate` each sequence is repeated k = predict_rate / mask_rate times, every copy
corrupting a disjoint `mask_rate` share, so the loss covers the union while each copy stays as readable as
at `mask_rate`. The batch then grows by k (`batch_multiplier`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import check_choice, check_range
from ..errors import ConfigError
from ..labels import IGNORE_INDEX
from . import selection
from .sentence import SENTENCE_TASKS, check_sentence_batch

UNITS = ("token", "whole_word", "span", "pmi", "ngram")
SAMPLINGS = ("exact", "bernoulli")
SPAN_REPLACEMENTS = ("per_span", "per_token")


def check_split(key: str, split: tuple[float, ...], names: str) -> None:
    """A probability split: each share in [0, 1] and the shares summing to 1."""
    for i, share in enumerate(split):
        check_range(f"{key}[{i}]", share, 0.0, 1.0)
    if abs(sum(split) - 1.0) > 1e-6:
        raise ConfigError(f"the shares ({names}) must sum to 1, got {' + '.join(f'{s:g}' for s in split)} "
                          f"= {sum(split):g}", key)


def check_wiring(vocab_size: int, ids: dict[str, int | None], special_ids: list[int]) -> None:
    """Token ids handed over by the tokenizer must lie inside the vocabulary."""
    check_range("vocab_size", vocab_size, 1, None)
    for key, value in ids.items():
        if value is not None and not 0 <= value < vocab_size:
            raise ConfigError(f"must be a token id in [0, {vocab_size}), got {value}", key)
    bad = [i for i in special_ids if not 0 <= i < vocab_size]
    if bad:
        raise ConfigError(f"ids {bad[:5]} are outside the vocabulary [0, {vocab_size})", "special_ids")


def replacement_pool(vocab_size: int, special_ids: list[int]) -> torch.Tensor:
    """Every id a random replacement may take: the vocabulary minus the special tokens."""
    keep = torch.ones(vocab_size, dtype=torch.bool)
    keep[torch.tensor(sorted(set(special_ids)), dtype=torch.long)] = False
    return keep.nonzero().squeeze(1)


def apply_replacement(ids: torch.Tensor, selected: torch.Tensor, split: tuple[float, float, float], mask_id: int,
                      pool: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Replace selected positions by [MASK] / a random non-special token / themselves per the split.

    Random numbers are drawn for the selected positions only (a sixth of the batch at 15%)."""
    count = int(selected.sum())
    if count == 0:
        return ids.clone()
    u = torch.rand(count, generator=generator, device=ids.device)
    values = torch.where(u < split[0], mask_id, ids.masked_select(selected))
    if split[1] > 0:
        pool = pool.to(ids.device)
        picks = pool[torch.randint(len(pool), (count,), generator=generator, device=ids.device)]
        values = torch.where((u >= split[0]) & (u < split[0] + split[1]), picks, values)
    return ids.masked_scatter(selected, values)


def repeat_batch(batch: dict, rows: int, k: int) -> dict:
    """Each row's tensors repeated k times in place (row b becomes rows b*k .. b*k+k-1)."""
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == rows:
            out[key] = value.repeat_interleave(k, dim=0)
        else:
            out[key] = value
    return out


@dataclass(kw_only=True)
class MaskedLM:
    """Masked LM (BERT; Wettig et al. 2022): corrupt `mask_rate`, predict `predict_rate`, any unit."""

    NAME = "mlm"
    DESCRIPTION = "masked LM (BERT): corrupt mask_rate, predict predict_rate, token/whole-word/span/PMI/n-gram units"
    WIRING = ("vocab_size", "mask_id", "special_ids")

    vocab_size: int
    mask_id: int
    special_ids: list[int]
    mask_rate: float = 0.15
    predict_rate: float | None = None
    replace: tuple[float, float, float] = (0.8, 0.1, 0.1)
    sampling: str = "exact"
    unit: str = "token"
    span_p: float = 0.2
    max_span: int = 10
    max_ngram: int = 3
    span_replacement: str = "per_span"
    pmi_path: str | None = None
    sentence: str | None = None
    _plain: np.ndarray = field(init=False, repr=False, compare=False)  # bool [vocab]: not a special id
    _pool: np.ndarray = field(init=False, repr=False, compare=False)  # the ids a random replacement may take
    _pmi: object = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        check_wiring(self.vocab_size, {"mask_id": self.mask_id}, self.special_ids)
        check_range("mask_rate", self.mask_rate, 0.0, 1.0, low_open=True, high_open=True)
        check_range("predict_rate", self.predict_rate, 0.0, 1.0, low_open=True)
        self.replace = tuple(float(x) for x in self.replace)
        if len(self.replace) != 3:
            raise ConfigError(f"expected 3 shares (mask, random, keep), got {len(self.replace)}", "replace")
        check_split("replace", self.replace, "mask, random, keep")
        check_choice("sampling", self.sampling, SAMPLINGS)
        check_choice("unit", self.unit, UNITS)
        check_range("span_p", self.span_p, 0.0, 1.0, low_open=True)
        check_choice("span_replacement", self.span_replacement, SPAN_REPLACEMENTS)
        if self.max_span < 1:
            raise ConfigError(f"a span length must be at least 1 word, got {self.max_span}", "max_span")
        if self.max_ngram < 1:
            raise ConfigError(f"an n-gram holds at least 1 word, got max_ngram = {self.max_ngram}", "max_ngram")
        if self.unit == "ngram" and self.sampling != "exact":
            raise ConfigError("unit = \"ngram\" is ALBERT's greedy rule, which fills an exact budget; use "
                              "sampling = \"exact\"", "sampling")
        if self.sentence is not None:
            check_choice("sentence", self.sentence, SENTENCE_TASKS)
        if self.predict_rate is not None and self.predict_rate > self.mask_rate * (1 + 1e-9):
            ratio = self.predict_rate / self.mask_rate
            if abs(ratio - round(ratio)) > 1e-6:
                raise ConfigError(
                    f"predict_rate / mask_rate = {self.predict_rate:g} / {self.mask_rate:g} = {ratio:g} must be an "
                    "integer (each sequence becomes that many copies); pick predict_rate = 2, 3, ... x mask_rate",
                    "predict_rate")
        specials = sorted(set(self.special_ids) | {self.mask_id})
        self._plain = np.ones(self.vocab_size, dtype=np.bool_)
        self._plain[specials] = False
        self._pool = np.flatnonzero(self._plain)
        if self.replace[1] > 0 and len(self._pool) == 0:
            raise ConfigError("every vocabulary id is special, so no random replacement token exists", "replace")
        if self.unit == "pmi":
            if not self.pmi_path:
                raise ConfigError("unit = \"pmi\" needs pmi_path (build one with `maskbench pmi build`)", "pmi_path")
            from .pmi import load_pmi_vocabulary  # lazy: `maskbench --help` imports this module

            self._pmi = load_pmi_vocabulary(self.pmi_path)

    @property
    def batch_multiplier(self) -> int:
        """k: how many corrupted copies of each input sequence the output holds."""
        if self.predict_rate is None or self.predict_rate <= self.mask_rate * (1 + 1e-9):
            return 1
        return int(round(self.predict_rate / self.mask_rate))

    @property
    def effective_predict_rate(self) -> float:
        return self.mask_rate if self.predict_rate is None else self.predict_rate

    @property
    def sentence_task(self) -> str | None:
        """'nsp' / 'sop' when the loader must provide sentence pairs and the model a sentence head."""
        return self.sentence

    @property
    def description(self) -> str:
        return self.DESCRIPTION

    def summary(self) -> str:
        """One line for the logs, including the batch growth when predict_rate > mask_rate."""
        split = "/".join(f"{s:g}" for s in self.replace)
        text = (f"mlm: corrupt {self.mask_rate:.0%}, predict {self.effective_predict_rate:.0%} of tokens "
                f"({self.sampling}, unit={self.unit}, replace mask/random/keep={split}"
                f"{' per span' if self._replaces_per_span else ''})")
        if self.batch_multiplier > 1:
            text += f"; each sequence becomes {self.batch_multiplier} copies (batch x{self.batch_multiplier})"
        if self.sentence:
            text += f"; with {self.sentence.upper()}"
        return text

    def unit_starts(self, batch: dict, maskable: np.ndarray,
                    generator: torch.Generator) -> tuple[np.ndarray, np.ndarray | None]:
        """(Bool [B, L] of the maskable tokens that open a unit, word starts where a unit may be cut)."""
        if self.unit == "token":
            return maskable, None
        words = selection.word_starts_from_batch(batch, maskable, self.unit)
        if self.unit == "whole_word":
            return words, None
        words_t, maskable_t = torch.from_numpy(words), torch.from_numpy(maskable)
        if self.unit == "span":
            starts, _ = selection.geometric_span_starts(words_t, maskable_t, self.span_p, self.max_span, generator)
            return starts.numpy(), words
        ids = torch.from_numpy(selection.as_array(batch["input_ids"]))
        return self._pmi.unit_starts(ids, words_t, maskable_t).numpy(), None

    def select(self, batch: dict, generator: torch.Generator) -> torch.Tensor:
        """Copy index [B, L] of every corrupted token (0..k-1), or -1 where the token stays untouched."""
        ids = selection.as_array(batch["input_ids"])
        maskable = self._maskable(batch, ids)
        counts = selection.check_every_row_maskable(maskable)
        sparse = self._select_sparse(batch, maskable, generator, selection.numpy_rng(generator), counts)
        copies = np.full(ids.shape, selection.NOT_SELECTED, dtype=np.int64)
        copies.reshape(-1)[sparse.flat] = sparse.copy
        return torch.from_numpy(copies)

    def _maskable(self, batch: dict, ids: np.ndarray) -> np.ndarray:
        mask = batch.get("attention_mask")
        return selection.maskable_positions(ids, None if mask is None else selection.as_array(mask), self._plain)

    def _select_sparse(self, batch: dict, maskable: np.ndarray, generator: torch.Generator, rng: np.random.Generator,
                       counts: np.ndarray) -> selection.SparseSelection:
        k = self.batch_multiplier
        if self.unit == "token":
            return selection.token_selection(maskable, self.mask_rate, k, self.sampling, rng, counts=counts)
        if self.unit == "ngram":
            words = selection.word_starts_from_batch(batch, maskable, self.unit)
            return selection.ngram_selection(words, maskable, counts, self.mask_rate, k, rng, self.max_ngram)
        starts, cuttable = self.unit_starts(batch, maskable, generator)
        if cuttable is None:
            return selection.unit_selection(starts, maskable, counts, self.mask_rate, k, self.sampling, rng)
        copies = selection.assign_copies(torch.from_numpy(starts), torch.from_numpy(maskable), self.mask_rate, k,
                                         self.sampling, generator, word_starts=torch.from_numpy(cuttable)).numpy()
        flat = np.flatnonzero(copies >= 0)
        return selection.SparseSelection(flat, maskable.shape[1], copies.reshape(-1).take(flat),
                                         np.empty(0, dtype=np.int64))

    @property
    def _replaces_per_span(self) -> bool:
        """SpanBERT draws mask / random / keep once per span (`span_masking`, replacement='span')."""
        return self.unit == "span" and self.span_replacement == "per_span" and self.replace[0] < 1.0

    @property
    def _predicts_a_subset(self) -> bool:
        return self.predict_rate is not None and self.predict_rate < self.mask_rate * (1 - 1e-9)

    def _predicted(self, sparse: selection.SparseSelection, batch_size: int, rng: np.random.Generator,
                   n: np.ndarray) -> np.ndarray | None:
        """With predict_rate < mask_rate, which selected tokens the loss predicts (None: all of them)."""
        if not self._predicts_a_subset:
            return None
        if self.sampling == "bernoulli":
            return rng.random(len(sparse.flat)) < self.predict_rate / self.mask_rate
        counts = selection.target_counts(n, self.predict_rate)
        if self.unit == "token":  # ranks are already in random order
            return sparse.rank < counts.take(sparse.rows)
        rows = sparse.rows
        return selection.rank_within_rows(rows, batch_size, rng) < counts.take(rows)

    def __call__(self, batch: dict, generator: torch.Generator) -> dict:
        """Corrupt a batch of CPU tensors (a loader's; tensors on another device are masked on the CPU and
        returned on their device)."""
        if self.sentence:
            check_sentence_batch(batch, self.sentence)
        ids_t = batch["input_ids"]
        ids = selection.as_array(ids_t)
        if "attention_mask" not in batch:
            batch = {**batch, "attention_mask": torch.ones_like(ids_t)}
        rng = selection.numpy_rng(generator)
        maskable = self._maskable(batch, ids)
        counts = selection.check_every_row_maskable(maskable)
        sparse = self._select_sparse(batch, maskable, generator, rng, counts)
        predicted = self._predicted(sparse, ids.shape[0], rng, counts)
        k = self.batch_multiplier
        flat = sparse.flat
        if k > 1:
            batch = repeat_batch(batch, ids.shape[0], k)
            ids = np.repeat(ids, k, axis=0)
            flat = (sparse.rows * k + sparse.copy) * ids.shape[1] + sparse.cols
        out = dict(batch)
        runs = contiguous_runs(flat, ids.shape[1]) if self._replaces_per_span else None
        corrupted, labels = corrupt_flat(ids, flat, predicted, self.replace, self.mask_id, self._pool, rng, runs)
        out["input_ids"], out["labels"] = torch.from_numpy(corrupted), torch.from_numpy(labels)
        if ids_t.device.type != "cpu":
            out["input_ids"], out["labels"] = out["input_ids"].to(ids_t.device), out["labels"].to(ids_t.device)
        return out


def contiguous_runs(flat: np.ndarray, length: int) -> np.ndarray:
    """Run number (0, 1, ...) of each flat position among maximal runs of consecutive positions of one row.

    SpanBERT merges touching spans (`merge_intervals`) before it draws one replacement per span, so a run of
    adjacent selected positions is one span here too."""
    order = np.argsort(flat, kind="stable")
    ordered = flat.take(order)
    starts = np.ones(len(flat), dtype=np.bool_)
    starts[1:] = (ordered[1:] != ordered[:-1] + 1) | (ordered[1:] % length == 0)
    runs = np.empty(len(flat), dtype=np.int64)
    runs[order] = np.cumsum(starts) - 1
    return runs


def corrupt_flat(ids: np.ndarray, flat: np.ndarray, predicted: np.ndarray | None,
                 split: tuple[float, float, float], mask_id: int, pool: np.ndarray,
                 rng: np.random.Generator, runs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(corrupted ids, labels) from flat positions (row * L + column).

    One uniform draw per selected position decides mask / random / keep (two compares), or one per run
    when `runs` numbers the span of each position (SpanBERT: a span is all [MASK], all random or all kept);
    the random ids are one bounded integer draw per position over the non-special pool and a gather from it.
    Nothing full-size is built besides the two outputs."""
    corrupted = np.array(ids, order="C")
    original = corrupted.reshape(-1).take(flat)
    u = rng.random(len(flat)) if runs is None else rng.random(int(runs.max()) + 1 if len(runs) else 0).take(runs)
    values = original
    if split[1] > 0:
        picks = pool.take(rng.integers(0, len(pool), len(flat)))
        values = np.where(u < split[0] + split[1], picks, values)
    if split[0] > 0:
        values = np.where(u < split[0], mask_id, values)
    corrupted.reshape(-1)[flat] = values
    labels = np.full_like(corrupted, IGNORE_INDEX)
    if predicted is None:
        labels.reshape(-1)[flat] = original
    else:
        labels.reshape(-1)[flat[predicted]] = original[predicted]
    return corrupted, labels


__all__ = ["MaskedLM", "IGNORE_INDEX", "apply_replacement", "corrupt_flat", "replacement_pool",
           "check_split", "check_wiring", "repeat_batch"]
