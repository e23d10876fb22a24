"""Length bucketing keeps every example once per epoch and cuts the padding."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from maskbench.finetune.tasks import bucketed_batches, shuffled_batches


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 300), batch_size=st.integers(1, 17), pool=st.integers(1, 8), seed=st.integers(0, 99))
def test_every_example_once_in_batches_of_the_asked_size(n, batch_size, pool, seed):
    lengths = np.random.default_rng(seed).integers(1, 128, n)
    batches = bucketed_batches(lengths, batch_size, np.random.default_rng(seed), pool=pool)
    assert sorted(np.concatenate(batches).tolist()) == list(range(n))
    assert all(1 <= len(b) <= batch_size for b in batches)
    assert sum(len(b) < batch_size for b in batches) <= -(-n // (batch_size * pool))


def test_bucketing_pads_less_than_shuffling():
    lengths = np.random.default_rng(0).lognormal(3.0, 0.6, 4000).astype(int).clip(2, 128)

    def padded(batches):
        return sum(len(b) * lengths[b].max() for b in batches)

    shuffled = padded(shuffled_batches(len(lengths), 32, np.random.default_rng(1)))
    bucketed = padded(bucketed_batches(lengths, 32, np.random.default_rng(1)))
    assert bucketed < 0.8 * shuffled
    assert bucketed >= lengths.sum()


def test_a_pool_of_one_batch_has_the_shuffled_batch_contents():
    lengths = np.random.default_rng(0).integers(1, 50, 100)
    plain = shuffled_batches(100, 10, np.random.default_rng(3))
    bucketed = bucketed_batches(lengths, 10, np.random.default_rng(3), pool=1)
    assert sorted(map(sorted, (b.tolist() for b in plain))) == sorted(map(sorted, (b.tolist() for b in bucketed)))


def test_same_seed_same_batches():
    lengths = np.arange(200) % 37
    a = bucketed_batches(lengths, 8, np.random.default_rng(5))
    b = bucketed_batches(lengths, 8, np.random.default_rng(5))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))



def test_length_bucketing_switch_trains_on_bucketed_batches(tmp_path, monkeypatch):
    """`length_bucketing = true` takes its batches from `bucketed_batches`; off, it never calls it."""
    import maskbench.finetune.loop as loop
    from maskbench.data.glue import load_task
    from maskbench.data.synth import write_tasks
    from maskbench.data.tokenizer import train_tokenizer
    from maskbench.finetune import finetune
    from maskbench.finetune.config import FinetuneConfig

    write_tasks(tmp_path / "tasks", seed=0, train=48, dev=16, test=8, tasks=("synth-agreement",))
    task = tmp_path / "tasks" / "synth-agreement"
    train_tokenizer([], "wordpiece", 300, tmp_path / "tok.json", texts=load_task(task).splits["train"].text_a)
    calls = []
    real = loop.bucketed_batches
    monkeypatch.setattr(loop, "bucketed_batches", lambda *a, **k: calls.append(a) or real(*a, **k))
    for bucketing in (False, True):
        cfg = FinetuneConfig(task=str(task), checkpoint="random:bert-tiny", tokenizer=str(tmp_path / "tok.json"),
                             seeds=[0], max_steps=2, batch_size=8, max_length=32, progress=False,
                             length_bucketing=bucketing)
        finetune(cfg, tmp_path / f"out-{bucketing}")
        assert len(calls) == int(bucketing)
    assert len(calls[0][0]) == 48
