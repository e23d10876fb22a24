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

import torch

from ..config import check_choice, check_range
from ..errors import ConfigError
from . import selection
from .sentence import SENTENCE_TASKS, check_sentence_batch

IGNORE_INDEX = -100
UNITS = ("token", "whole_word", "span", "pmi")
SAMPLINGS = ("exact", "bernoulli")


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
    DESCRIPTION = "masked LM (BERT): corrupt mask_rate, predict predict_rate, token/whole-word/span/PMI units"
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
    pmi_path: str | None = None
    sentence: str | None = None
    _special: torch.Tensor = field(init=False, repr=False, compare=False)
    _plain: torch.Tensor = field(init=False, repr=False, compare=False)
    _pool: torch.Tensor = field(init=False, repr=False, compare=False)
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
        if self.max_span < 1:
            raise ConfigError(f"a span length must be at least 1 word, got {self.max_span}", "max_span")
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
        self._special = selection.special_table(self.vocab_size, specials)
        self._plain = ~self._special
        self._pool = replacement_pool(self.vocab_size, specials)
        if self.replace[1] > 0 and len(self._pool) == 0:
            raise ConfigError("every vocabulary id is special, so no random replacement token exists", "replace")
        if self.unit == "pmi":
            if not self.pmi_path:
                raise ConfigError("unit = \"pmi\" needs pmi_path (build one with `maskbench pmi build`)", "pmi_path")
            from .pmi import load_pmi_vocabulary

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
                f"({self.sampling}, unit={self.unit}, replace mask/random/keep={split})")
        if self.batch_multiplier > 1:
            text += f"; each sequence becomes {self.batch_multiplier} copies (batch x{self.batch_multiplier})"
        if self.sentence:
            text += f"; with {self.sentence.upper()}"
        return text

    def unit_starts(self, batch: dict, maskable: torch.Tensor,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(Bool [B, L] of the maskable tokens that open a unit, word starts where a unit may be cut)."""
        if self.unit == "token":
            return maskable, None
        words = selection.word_starts_from_batch(batch, maskable, self.unit)
        if self.unit == "whole_word":
            return words, None
        if self.unit == "span":
            starts, _ = selection.geometric_span_starts(words, maskable, self.span_p, self.max_span, generator)
            return starts, words
        return self._pmi.unit_starts(batch["input_ids"], words, maskable), None

    def select(self, batch: dict, generator: torch.Generator) -> torch.Tensor:
        """Copy index [B, L] of every corrupted token (0..k-1), or -1 where the token stays untouched."""
        ids = batch["input_ids"]
        maskable = selection.maskable_positions(ids, batch.get("attention_mask"), self._special, self._plain)
        counts = selection.check_every_row_maskable(maskable)
        sparse = self._select_sparse(batch, maskable, generator, counts)
        copies = torch.full_like(ids, selection.NOT_SELECTED)
        copies[sparse.rows, sparse.cols] = sparse.copy
        return copies

    def _select_sparse(self, batch: dict, maskable: torch.Tensor, generator: torch.Generator,
                       counts: torch.Tensor) -> selection.SparseSelection:
        k = self.batch_multiplier
        if self.unit == "token":
            return selection.token_selection(maskable, self.mask_rate, k, self.sampling, generator, counts=counts,
                                             ranked=self._predicts_a_subset)
        starts, cuttable = self.unit_starts(batch, maskable, generator)
        if cuttable is None:
            return selection.unit_selection(starts, maskable, counts, self.mask_rate, k, self.sampling, generator)
        copies = selection.assign_copies(starts, maskable, self.mask_rate, k, self.sampling, generator,
                                         word_starts=cuttable)
        rows, cols = (copies >= 0).nonzero(as_tuple=True)
        return selection.SparseSelection(rows, cols, copies[rows, cols], torch.empty(0, dtype=torch.long))

    @property
    def _predicts_a_subset(self) -> bool:
        return self.predict_rate is not None and self.predict_rate < self.mask_rate * (1 - 1e-9)

    def _predicted(self, sparse: selection.SparseSelection, maskable: torch.Tensor, generator: torch.Generator,
                   n: torch.Tensor) -> torch.Tensor | None:
        """With predict_rate < mask_rate, which selected tokens the loss predicts (None: all of them)."""
        if not self._predicts_a_subset:
            return None
        if self.sampling == "bernoulli":
            u = torch.rand(sparse.rows.shape, generator=generator, device=maskable.device)
            return u < self.predict_rate / self.mask_rate
        counts = selection.target_counts(n, self.predict_rate)
        if self.unit == "token":  # ranks are already in random order
            return sparse.rank < counts[sparse.rows]
        selected = torch.zeros_like(maskable)
        selected[sparse.rows, sparse.cols] = True
        return selection.exact_subset(selected, counts, generator)[sparse.rows, sparse.cols]

    def __call__(self, batch: dict, generator: torch.Generator) -> dict:
        if self.sentence:
            check_sentence_batch(batch, self.sentence)
        ids = batch["input_ids"]
        if "attention_mask" not in batch:
            batch = {**batch, "attention_mask": torch.ones_like(ids)}
        maskable = selection.maskable_positions(ids, batch["attention_mask"], self._special, self._plain)
        counts = selection.check_every_row_maskable(maskable)
        sparse = self._select_sparse(batch, maskable, generator, counts)
        predicted = self._predicted(sparse, maskable, generator, counts)
        k = self.batch_multiplier
        flat = sparse.flat
        if k > 1:
            batch = repeat_batch(batch, ids.shape[0], k)
            flat = (sparse.rows * k + sparse.copy) * ids.shape[1] + sparse.cols
        elif flat is None:
            flat = sparse.rows * ids.shape[1] + sparse.cols
        out = dict(batch)
        out["input_ids"], out["labels"] = corrupt_flat(batch["input_ids"], flat, predicted, self.replace,
                                                       self.mask_id, self._pool, generator)
        return out


def corrupt_positions(ids: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, predicted: torch.Tensor | None,
                      split: tuple[float, float, float], mask_id: int, pool: torch.Tensor,
                      generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(corrupted ids, labels) from coordinates: only the selected positions are read, drawn for and written."""
    return corrupt_flat(ids, rows * ids.shape[1] + cols, predicted, split, mask_id, pool, generator)


def corrupt_flat(ids: torch.Tensor, flat: torch.Tensor, predicted: torch.Tensor | None,
                 split: tuple[float, float, float], mask_id: int, pool: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(corrupted ids, labels) from flat positions (row * L + column).

    One uniform draw per selected position decides mask / random / keep (two compares); the random ids are
    one `randint` over the non-special pool and a gather from it. Nothing full-size is built besides the two
    outputs."""
    device = ids.device
    original = ids.reshape(-1).index_select(0, flat)
    u = torch.rand(flat.shape, generator=generator, device=device)
    values = original
    if split[1] > 0:
        pool = pool.to(device)
        picks = pool.index_select(0, torch.randint(len(pool), flat.shape, generator=generator, device=device))
        values = torch.where(u < split[0] + split[1], picks, values)
    if split[0] > 0:
        values = torch.where(u < split[0], mask_id, values)
    corrupted = ids.clone(memory_format=torch.contiguous_format)
    corrupted.view(-1).index_copy_(0, flat, values)
    labels = torch.full_like(corrupted, IGNORE_INDEX)
    if predicted is None:
        labels.view(-1).index_copy_(0, flat, original)
    else:
        keep = predicted.nonzero().squeeze(1)
        labels.view(-1).index_copy_(0, flat.index_select(0, keep), original.index_select(0, keep))
    return corrupted, labels


__all__ = ["MaskedLM", "IGNORE_INDEX", "apply_replacement", "corrupt_positions", "corrupt_flat", "replacement_pool",
           "check_split", "check_wiring", "repeat_batch"]
