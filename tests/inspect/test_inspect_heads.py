"""Head patterns: attention built with a known pattern per head must be recognised as that pattern."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maskbench.errors import ConfigError
from maskbench.inspect.heads import (LABELS, PATTERNS, HeadThresholds, TokenRoles, classify_heads,
                                     pattern_scores, plot_heads, HeadReport)

CLS, SEP, PUNCT = 2, 3, (50, 51)
ROLES = TokenRoles(cls=CLS, sep=(SEP,), punctuation=np.isin(np.arange(60), PUNCT),
                   special=np.arange(60) < 5)
# sentence A / sentence B with repeated words inside A and across A-B, punctuation, and padding
ROWS = [
    ([CLS, 10, 11, 50, 10, 12, SEP, 13, 11, 51, 14, SEP], [0] * 7 + [1] * 5),
    ([CLS, 20, 21, 20, 51, 22, SEP, 21, 23, 50, SEP], [0] * 7 + [1] * 4),
    ([CLS, 30, 31, 50, 32, 30, 31, SEP], [0] * 8),
]


def _batch(copies=4):
    length = max(len(r) for r, _ in ROWS)
    rows = ROWS * copies
    ids = np.zeros((len(rows), length), np.int64)
    tt = np.zeros_like(ids)
    mask = np.zeros_like(ids)
    for b, (r, seg) in enumerate(rows):
        ids[b, :len(r)], tt[b, :len(r)], mask[b, :len(r)] = r, seg, 1
    return ids, mask, tt


def _targets(pattern, ids, tt, n, q):
    """Keys of query q for `pattern`, written out plainly (independent of the vectorised scorer)."""
    keys = range(n)
    word = lambda i: ids[i] >= 5
    if pattern == "next":
        return [q + 1] if q + 1 < n else []
    if pattern == "previous":
        return [q - 1] if q > 0 else []
    if pattern == "same_token":
        return [k for k in keys if k != q and word(k) and word(q) and ids[k] == ids[q] and tt[k] == tt[q]]
    if pattern == "other_sentence":
        return [k for k in keys if word(k) and word(q) and ids[k] == ids[q] and tt[k] != tt[q]]
    if pattern == "cls":
        return [k for k in keys if ids[k] == CLS]
    if pattern == "sep":
        return [k for k in keys if ids[k] == SEP]
    if pattern == "punctuation":
        return [k for k in keys if ids[k] in PUNCT]
    if pattern == "broad":
        return list(keys)
    return []  # "none": every token attends to itself


def _known_attention(ids, mask, tt):
    """[B, 1 layer, heads = one per label, L, L]: head i follows LABELS[i]."""
    b, length = ids.shape
    att = np.zeros((b, 1, len(LABELS), length, length), np.float32)
    for i in range(b):
        n = int(mask[i].sum())
        for h, label in enumerate(LABELS):
            for q in range(n):
                keys = _targets(label, ids[i], tt[i], n, q) or [q]
                att[i, 0, h, q, keys] = 1.0 / len(keys)
    return att


def test_every_pattern_is_recognised():
    ids, mask, tt = _batch()
    scores = pattern_scores(_known_attention(ids, mask, tt), ids, mask, tt, ROLES)
    labels = classify_heads(scores, HeadThresholds(min_queries=5))
    assert labels.tolist() == [list(LABELS)]
    mass = scores.scores[0]
    for h, label in enumerate(PATTERNS):
        assert mass[h, PATTERNS.index(label)] == pytest.approx(1.0, abs=1e-5), label


def test_scores_are_means_over_queries_that_have_a_target():
    ids, mask, tt = _batch(copies=1)
    scores = pattern_scores(_known_attention(ids, mask, tt), ids, mask, tt, ROLES)
    tokens = int(mask.sum())
    counts = dict(zip(PATTERNS, scores.counts.tolist()))
    assert counts["cls"] == counts["broad"] == tokens
    assert counts["next"] == counts["previous"] == tokens - len(ROWS)
    assert counts["other_sentence"] == 4  # 11<->11 and 21<->21, both directions
    assert scores.samples == len(ROWS) and scores.tokens == tokens


def test_a_pattern_with_too_few_queries_is_not_assigned():
    ids, mask, tt = _batch(copies=1)
    scores = pattern_scores(_known_attention(ids, mask, tt), ids, mask, tt, ROLES)
    labels = classify_heads(scores, HeadThresholds(min_queries=5))
    assert labels[0, LABELS.index("other_sentence")] != "other_sentence"


def test_thresholds_decide_between_pattern_and_none():
    scores = np.zeros((1, 2, len(PATTERNS)))
    scores[0, 0, PATTERNS.index("previous")] = 0.45
    scores[0, 1, PATTERNS.index("previous")] = 0.45
    scores[0, 1, PATTERNS.index("sep")] = 0.40
    assert classify_heads(scores).tolist() == [["none", "none"]]
    loose = HeadThresholds(previous=0.4, sep=0.2)
    assert classify_heads(scores, loose).tolist() == [["previous", "sep"]]  # 0.40/0.2 beats 0.45/0.4


def test_thresholds_are_checked():
    with pytest.raises(ConfigError, match="next"):
        HeadThresholds(next=1.5)
    from maskbench.config import from_dict

    with pytest.raises(ConfigError, match="did you mean 'previous'"):
        from_dict(HeadThresholds, {"prevous": 0.3})


@given(st.integers(0, 2**31 - 1), st.integers(1, 3), st.integers(1, 3))
@settings(max_examples=25, deadline=None)
def test_random_attention_scores_lie_in_unit_interval_and_add_up_over_batches(seed, layers, heads):
    rng = np.random.default_rng(seed)
    ids, mask, tt = _batch(copies=1)
    logits = rng.normal(size=(len(ids), layers, heads, ids.shape[1], ids.shape[1])) * 3
    logits = np.where(mask[:, None, None, None, :] > 0, logits, -np.inf)
    att = np.exp(logits - logits.max(-1, keepdims=True))
    att /= att.sum(-1, keepdims=True)
    whole = pattern_scores(att, ids, mask, tt, ROLES)
    assert ((whole.scores >= -1e-6) & (whole.scores <= 1 + 1e-6)).all()
    parts = pattern_scores(att[:1], ids[:1], mask[:1], tt[:1], ROLES) + pattern_scores(att[1:], ids[1:], mask[1:], tt[1:], ROLES)
    assert np.allclose(parts.sums, whole.sums, atol=1e-4) and (parts.counts == whole.counts).all()


def test_report_json_table_and_png(tmp_path):
    ids, mask, tt = _batch()
    scores = pattern_scores(_known_attention(ids, mask, tt), ids, mask, tt, ROLES)
    report = HeadReport(scores, classify_heads(scores, HeadThresholds(min_queries=5)), HeadThresholds(min_queries=5))
    info = json.loads(json.dumps(report.to_json()))
    assert info["summary"]["previous"] == ["L0H1"] and set(info["scores"]) == set(PATTERNS)
    assert "| previous | 1 | L0H1 (1.00) |" in report.table()
    png = plot_heads(report, tmp_path / "heads.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_head_patterns_on_a_real_model(encoder_dir, t5_dir, tokenizer):
    from inspect_helpers import SENTENCES
    from maskbench.inspect import head_patterns
    from maskbench.models import load_model

    for folder in (encoder_dir, t5_dir):
        model = load_model(folder)
        report = head_patterns(model, tokenizer, SENTENCES[:12], SENTENCES[1:13], batch_size=5, progress=False)
        layers, heads = report.labels.shape
        assert (layers, heads) == (2, 4) and report.scores.samples == 12
        assert set(report.labels.ravel()) <= set(LABELS)
        # a random model attends almost uniformly: broad scores are high
        assert report.scores.scores[..., PATTERNS.index("broad")].min() > 0.5
