"""Attention data with known content, built without a model (for the views and the size checks)."""

from __future__ import annotations

import numpy as np

from maskbench.inspect import AttentionData, AttentionSet

# Real-looking sentences for the tiny models' tokenizer and the head/probe tests.
SENTENCES = [
    "the cat sat on the mat , and the cat purred .",
    "a dog ran to the park ; the dog barked at a bird !",
    "birds sing in the morning , dogs bark at night .",
    "the quick brown fox jumps over the lazy dog .",
    "she said : the mat is red , the cat is black .",
    "it rained all day , so we stayed at home and read .",
    "my friend likes tea , but i like coffee more .",
    "the park was quiet ; only a bird sang in a tree .",
] * 8

HOSTILE = [
    "</script><script>window.__pwned=1</script>",
    "<img src=x onerror=\"window.__pwned=1\">",
    "\"quoted\" & 'single' &amp; &lt;b&gt;",
    "<!--",
    "\u2028line\u2029sep",
]


def random_attention_data(layers=2, heads=3, length=10, d=8, seed=0, tokens=None, pair_at=None, title="test",
                          qk=True) -> AttentionData:
    rng = np.random.default_rng(seed)
    tokens = tokens or [f"tok{i}" for i in range(length)]
    length = len(tokens)
    q = rng.normal(size=(layers, heads, length, d)).astype(np.float32)
    k = rng.normal(size=(layers, heads, length, d)).astype(np.float32)
    scale = 1 / np.sqrt(d)
    scores = np.einsum("lhqd,lhkd->lhqk", q, k) * scale
    att = np.exp(scores - scores.max(-1, keepdims=True))
    att /= att.sum(-1, keepdims=True)
    seg = np.zeros(length, dtype=np.int8)
    if pair_at is not None:
        seg[pair_at:] = 1
    s = AttentionSet("encoder", att, tokens, tokens, query_segments=seg, key_segments=seg,
                     queries=q if qk else None, keys=k if qk else None, scale=float(scale))
    return AttentionData([s], title=title)
