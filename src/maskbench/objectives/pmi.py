"""PMI-masking (Levine et al. 2021): mask collocations (high-PMI word n-grams) as single units.

Building (`maskbench pmi build --shards DIR --out pmi.json`): count every word n-gram (n = 1..max_n)
inside a sentence of the training split, then score each n-gram seen at least `min_count` times by
Levine et al.'s PMI_n: log p(w1..wn) minus the largest sum of log-probabilities over the ways to cut it
into two or more contiguous pieces (so an n-gram scores high only when no split of it explains it). The
`max_ngrams` highest go into a JSON vocabulary of token-id n-grams.

Masking (`unit = "pmi"`): every run of n words (n from max_n down to 2) whose tokens match a vocabulary
n-gram becomes one unit; the other words stay single units. A match is dropped when it overlaps a longer
match or an earlier match of the same length.

N-grams are identified by a polynomial hash of their token ids over two 31-bit prime moduli (62 bits):
the same `window_hash` serves the corpus counts, the vocabulary file and the batches, vectorised with
prefix sums (no loop over tokens). Counting uses numpy's `unique`. The split is held in memory as int64
(about 40 bytes per token while building).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..config import check_range
from ..data.shards import Shards
from ..errors import DataError
from ..io import read_json, write_json

FORMAT = "maskbench-pmi"
FORMAT_VERSION = 1
_MODULI = (2147483647, 2147483629)
_BASES = (1000003, 916132831)


def _pow_mod(base: int, exponents: torch.Tensor, modulus: int) -> torch.Tensor:
    """base ** exponents mod modulus, elementwise, by repeated squaring (31 vectorised steps at most)."""
    result = torch.ones_like(exponents)
    e = exponents.clone()
    b = base % modulus
    while bool((e > 0).any()):
        result = torch.where((e & 1).bool(), result * b % modulus, result)
        b = b * b % modulus
        e >>= 1
    return result


class WindowHasher:
    """Hashes of token windows [start, end) of one flat int64 token tensor, via prefix sums."""

    def __init__(self, length: int):
        positions = torch.arange(length + 1, dtype=torch.long)
        self.length = length
        self.powers = [_pow_mod(b, positions, m) for b, m in zip(_BASES, _MODULI)]
        self.inverse_powers = [_pow_mod(pow(b, m - 2, m), positions, m) for b, m in zip(_BASES, _MODULI)]

    def __call__(self, tokens: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        n = tokens.shape[0]
        keys = torch.zeros(starts.shape, dtype=torch.long, device=tokens.device)
        for modulus, powers, inverse in zip(_MODULI, self.powers, self.inverse_powers):
            powers = powers[:n].to(tokens.device)
            terms = (tokens + 1) % modulus * powers % modulus
            prefix = torch.nn.functional.pad(terms.cumsum(0) % modulus, (1, 0))
            window = (prefix[ends] - prefix[starts]) % modulus * inverse.to(tokens.device)[starts] % modulus
            keys = keys * modulus + window
        return keys


def window_hash(tokens: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    return WindowHasher(tokens.shape[0])(tokens, starts, ends)


def _compositions(n: int) -> list[tuple[int, ...]]:
    """Every way to cut n words into two or more contiguous pieces (lengths of the pieces)."""
    out = []
    for cuts in range(1, n):
        for points in itertools.combinations(range(1, n), cuts):
            bounds = (0, *points, n)
            out.append(tuple(b - a for a, b in zip(bounds, bounds[1:])))
    return out


@dataclass
class PmiBuildConfig:
    max_n: int = 5
    min_count: int = 10
    max_ngrams: int = 10000
    split: str = "train"

    def __post_init__(self):
        check_range("max_n", self.max_n, 2, 8)
        check_range("min_count", self.min_count, 1, None)
        check_range("max_ngrams", self.max_ngrams, 1, None)


def build_pmi_vocabulary(shards_dir: str | Path, config: PmiBuildConfig | None = None,
                         progress: bool = True) -> dict:
    """Count word n-grams in a shard split and keep the `max_ngrams` with the highest PMI_n."""
    config = config or PmiBuildConfig()
    shards = Shards.open(shards_dir)
    arrays = shards.split(config.split)
    tokens_np = np.asarray(arrays.tokens).astype(np.int64)
    if len(tokens_np) == 0:
        raise DataError(f"split '{config.split}' of {shards_dir} holds no tokens")
    starts_np = np.asarray(arrays.word_starts).astype(bool)
    sentences = np.asarray(arrays.sentence_ids)
    starts_np[0] = True
    starts_np[1:] |= sentences[1:] != sentences[:-1]
    word_starts = np.flatnonzero(starts_np)
    word_ends = np.append(word_starts[1:], len(tokens_np))
    word_sentence = sentences[word_starts]
    num_words = len(word_starts)

    tokens = torch.from_numpy(tokens_np)
    hasher = WindowHasher(len(tokens_np))
    keys: dict[int, np.ndarray] = {}
    tables: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    totals: dict[int, int] = {}
    bar = tqdm(range(1, config.max_n + 1), desc="pmi: counting n-grams", unit="n", disable=not progress)
    for n in bar:
        count = num_words - n + 1
        key = np.full(num_words, -1, dtype=np.int64)
        if count > 0:
            valid = word_sentence[:count] == word_sentence[n - 1:]
            first = torch.from_numpy(word_starts[:count][valid])
            last = torch.from_numpy(word_ends[n - 1:][valid])
            key[:count][valid] = hasher(tokens, first, last).numpy()
        keys[n] = key
        present = key >= 0
        uniq, index, counts = np.unique(key[present], return_index=True, return_counts=True)
        tables[n] = (uniq, np.flatnonzero(present)[index], counts)
        totals[n] = int(present.sum())
        bar.set_postfix(words=num_words, ngrams=len(uniq))

    def log_prob(n: int, word_index: np.ndarray) -> np.ndarray:
        uniq, _, counts = tables[n]
        found = np.searchsorted(uniq, keys[n][word_index])
        return np.log(counts[found]) - math.log(totals[n])

    scored = []
    for n in range(2, config.max_n + 1):
        uniq, where, counts = tables[n]
        keep = counts >= config.min_count
        where, counts = where[keep], counts[keep]
        if len(where) == 0:
            continue
        joint = np.log(counts) - math.log(totals[n])
        best_split = np.full(len(where), -np.inf)
        for pieces in _compositions(n):
            total = np.zeros(len(where))
            offset = 0
            for size in pieces:
                total += log_prob(size, where + offset)
                offset += size
            best_split = np.maximum(best_split, total)
        scored.append((n, where, counts, joint - best_split))
    if not scored:
        raise DataError(f"no word n-gram occurs {config.min_count} times in {shards_dir}; lower min_count or "
                        "use more text")
    all_n = np.concatenate([np.full(len(s[1]), s[0]) for s in scored])
    all_where = np.concatenate([s[1] for s in scored])
    all_counts = np.concatenate([s[2] for s in scored])
    all_pmi = np.concatenate([s[3] for s in scored])
    top = np.argsort(-all_pmi, kind="stable")[: config.max_ngrams]
    ngrams = []
    for n, w, c, p in zip(all_n[top], all_where[top], all_counts[top], all_pmi[top]):
        words = [tokens_np[word_starts[i]:word_ends[i]].tolist() for i in range(w, w + n)]
        ngrams.append({"words": words, "count": int(c), "pmi": round(float(p), 4)})
    per_length = {str(n): int((all_n[top] == n).sum()) for n in range(2, config.max_n + 1)}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tokenizer_hash": shards.manifest.get("tokenizer_hash"),
        "source": str(shards_dir),
        "split": config.split,
        "max_n": config.max_n,
        "min_count": config.min_count,
        "words_counted": num_words,
        "ngrams_per_length": per_length,
        "ngrams": ngrams,
    }


def write_pmi_vocabulary(vocabulary: dict, out: str | Path) -> None:
    write_json(out, vocabulary, indent=1)


@dataclass
class PmiVocabulary:
    """The n-gram keys per length, ready to match against batches."""

    keys: dict[int, torch.Tensor]
    max_n: int
    _hashers: dict[int, WindowHasher] = field(default_factory=dict, repr=False)

    @classmethod
    def from_ngrams(cls, ngrams: list[list[list[int]]]) -> "PmiVocabulary":
        by_length: dict[int, list[list[int]]] = {}
        for words in ngrams:
            by_length.setdefault(len(words), []).append([t for word in words for t in word])
        keys = {}
        for n, flat_lists in by_length.items():
            sizes = torch.tensor([len(x) for x in flat_lists], dtype=torch.long)
            flat = torch.tensor([t for x in flat_lists for t in x], dtype=torch.long)
            ends = sizes.cumsum(0)
            keys[n] = torch.unique(window_hash(flat, ends - sizes, ends))
        return cls(keys=keys, max_n=max(keys) if keys else 1)

    def _hasher(self, length: int) -> WindowHasher:
        if length not in self._hashers:
            self._hashers[length] = WindowHasher(length)
        return self._hashers[length]

    def unit_starts(self, input_ids: torch.Tensor, word_starts: torch.Tensor, maskable: torch.Tensor) -> torch.Tensor:
        """Word starts [B, L] with the non-initial words of every matched n-gram cleared (one unit each)."""
        batch, length = input_ids.shape
        size = batch * length
        device = input_ids.device
        flat = input_ids.reshape(-1).long()
        starts_flat = word_starts.reshape(-1)
        positions = torch.arange(size, device=device)
        boundary = starts_flat | ~maskable.reshape(-1) | (positions % length == 0)
        marks = torch.where(boundary, positions, size)
        suffix_min = torch.flip(torch.cummin(torch.flip(marks, [0]), 0).values, [0])
        next_boundary = torch.cat([suffix_min[1:], torch.tensor([size], device=device)])
        word_start = starts_flat.nonzero().squeeze(1)
        num_words = word_start.shape[0]
        if num_words == 0 or not self.keys:
            return word_starts
        word_end = next_boundary[word_start]
        row = word_start // length
        joined = torch.zeros(num_words, dtype=torch.bool, device=device)
        joined[:-1] = (word_end[:-1] == word_start[1:]) & (row[:-1] == row[1:])
        breaks = torch.nn.functional.pad((~joined).long().cumsum(0), (1, 0))
        hasher = self._hasher(size)
        index = torch.arange(num_words, device=device)
        claimed = torch.nn.functional.pad(torch.zeros(num_words, dtype=torch.long, device=device), (1, 0))
        is_unit_start = torch.ones(num_words, dtype=torch.bool, device=device)
        for n in range(min(self.max_n, num_words), 1, -1):
            if n not in self.keys:
                continue
            last = (index + n - 1).clamp(max=num_words - 1)
            fits = (index + n - 1 < num_words) & (breaks[last] - breaks[index] == 0)
            keys = hasher(flat, word_start, word_end[last])
            candidate = fits & torch.isin(keys, self.keys[n].to(device))
            candidate &= claimed[(index + n).clamp(max=num_words)] - claimed[index] == 0
            before = torch.nn.functional.pad(candidate.long().cumsum(0), (1, 0))
            accepted = candidate & (before[index] - before[(index - n + 1).clamp(min=0)] == 0)
            cover = torch.zeros(num_words + 1, dtype=torch.long, device=device)
            cover.index_add_(0, index[accepted], torch.ones_like(index[accepted]))
            cover.index_add_(0, (index[accepted] + n).clamp(max=num_words), -torch.ones_like(index[accepted]))
            covered = cover.cumsum(0)[:num_words] > 0
            is_unit_start &= ~(covered & ~accepted)
            claimed = torch.nn.functional.pad((claimed[1:] - claimed[:-1] + covered.long()).cumsum(0), (1, 0))
        out = starts_flat.clone()
        out[word_start[~is_unit_start]] = False
        return out.view(batch, length)


def load_pmi_vocabulary(path: str | Path) -> PmiVocabulary:
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DataError(f"{path} is not a maskbench PMI vocabulary; build one with `maskbench pmi build`")
    ngrams = [entry["words"] for entry in data.get("ngrams", [])]
    if not ngrams:
        raise DataError(f"{path} holds no n-grams; rebuild it with a lower min_count")
    return PmiVocabulary.from_ngrams(ngrams)
