"""Step time of fine-tuning: vanilla vs Child-Tuning-F vs Child-Tuning-D (and the HF BERT model for reference).

    .venv/bin/python benchmarks/bench_finetune.py [--size bert-tiny] [--batch 32] [--length 128] [--rounds 7]

One optimiser step = forward + backward + gradient clipping + AdamW (+ the Child-Tuning hook), on the same
fixed batches for every side. The sides are alternated in rounds (vanilla, F, D, vanilla, F, D, ...) and
the median over rounds is reported, so a neighbour's load on a shared machine hits every side alike.
The Fisher pass of Child-Tuning-D is timed on its own. Each allocator setting runs in its own
subprocess (glibc malloc settings are process-wide): `MASKBENCH_MALLOC_TUNING=1` and `=0`.
The reference side is `transformers.BertForSequenceClassification` of the same shape in the same loop
(`transformers.Trainer` needs `accelerate`, which is not a maskbench dependency).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch


def build(size: str, vocab: int, seed: int = 0):
    from maskbench.models.heads import EncoderForSequenceClassification
    from maskbench.models.sizes import named_config

    config = named_config(size, vocab_size=vocab)
    return EncoderForSequenceClassification(config, 2, torch.Generator().manual_seed(seed))


def fixed_batches(n: int, batch: int, length: int, vocab: int):
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        lengths = torch.randint(length // 2, length + 1, (batch,), generator=g)
        mask = (torch.arange(length)[None] < lengths[:, None]).long()
        ids = torch.randint(105, vocab, (batch, length), generator=g) * mask
        out.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids),
                    "labels": torch.randint(0, 2, (batch,), generator=g)})
    return out


def bench_config(args):
    """Fine-tuning settings of the bench: p for both Child-Tuning variants, no warm-up (a constant lr)."""
    from maskbench.finetune.config import ChildTuningConfig, FinetuneConfig

    return FinetuneConfig(warmup=0.0, child=ChildTuningConfig(p_f=args.p, p_d=args.p))


def loop_step(model, optimization, hooks):
    """The fine-tuning loop's own `train_step` over the bench's batches."""
    from maskbench.finetune.loop import train_step
    from maskbench.train.state import TrainState, WindowStats

    state = TrainState(seed=0, window=WindowStats(()))

    def step(batch):
        train_step(model, batch, optimization, state, hooks)

    return step


def side(method: str, args, batches):
    """(step function, model) for one method, set up by `attach_method` as `train_seed` does."""
    from maskbench.finetune.child_tuning import fisher_information, pretrained_parameters
    from maskbench.finetune.loop import attach_method, finetune_optimization

    cfg = bench_config(args)
    model = build(args.size, args.vocab)
    model.train()
    info = {}

    def fisher():
        start = time.perf_counter()
        scores = fisher_information(model, iter(batches[:args.fisher_batches]), pretrained_parameters(model),
                                    args.fisher_batches, 1.0)
        info["fisher_seconds"] = time.perf_counter() - start
        return scores, {}

    start = time.perf_counter()
    optimization, hooks = attach_method(model, method, cfg, 1,
                                        lambda m: finetune_optimization(m, cfg, 1e-4, 10**9), fisher)
    if method == "child_d":
        info["mask_seconds"] = time.perf_counter() - start - info["fisher_seconds"]
    return loop_step(model, optimization, hooks), info


def hf_side(args):
    """The same step on `transformers.BertForSequenceClassification` of the same shape (reference).

    `transformers.Trainer` itself needs the `accelerate` package, which maskbench does not depend on, so
    the reference is the Hugging Face model driven by the same loop and the same AdamW settings.
    """
    try:
        from transformers import BertConfig, BertForSequenceClassification
    except ImportError:
        return None
    from maskbench.finetune.loop import MethodHooks, finetune_optimization
    from maskbench.models.sizes import named_config

    c = named_config(args.size, vocab_size=args.vocab)
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, num_hidden_layers=c.num_layers,
        num_attention_heads=c.num_heads, intermediate_size=c.intermediate_size,
        max_position_embeddings=c.max_positions, num_labels=2, attn_implementation="sdpa"))
    model.train()
    optimization = finetune_optimization(model, bench_config(args), 1e-4, 10**9)
    return loop_step(model, optimization, MethodHooks("vanilla")), {}


def measure(args) -> dict:
    torch.set_num_threads(args.threads)
    from maskbench.runtime import allocator_tuned, tune_allocator

    tune_allocator()
    batches = fixed_batches(max(args.steps, args.fisher_batches), args.batch, args.length, args.vocab)
    methods = ["vanilla", "child_f", "child_d"]
    sides = {m: side(m, args, batches) for m in methods}
    if args.hf and hf_side(args) is not None:
        methods.append("hf_model")
        sides["hf_model"] = hf_side(args)
    for m in methods:  # warm-up
        for b in batches[:2]:
            sides[m][0](b)
    times = {m: [] for m in methods}
    for _ in range(args.rounds):
        for m in methods:
            step = sides[m][0]
            start = time.perf_counter()
            for b in batches[:args.steps]:
                step(b)
            times[m].append((time.perf_counter() - start) / args.steps)
    out = {"allocator_tuned": allocator_tuned(), "step_seconds": {m: statistics.median(t) for m, t in times.items()},
           "fisher_seconds": sides["child_d"][1]["fisher_seconds"], "fisher_batches": args.fisher_batches,
           "mask_seconds": sides["child_d"][1]["mask_seconds"],
           "parameters": sum(p.numel() for p in build(args.size, args.vocab).parameters())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="bert-tiny")
    parser.add_argument("--vocab", type=int, default=30522)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="steps per side per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--p", type=float, default=0.3, help="p_f and p_d")
    parser.add_argument("--fisher-batches", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-hf", dest="hf", action="store_false")
    parser.add_argument("--malloc", choices=["both", "on", "off"], default="both",
                        help="allocator tuning settings to measure (each in its own subprocess)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return
    rows = []
    settings = {"both": ("1", "0"), "on": ("1",), "off": ("0",)}[args.malloc]
    for setting in settings:
        env = dict(os.environ, MASKBENCH_MALLOC_TUNING=setting)
        cmd = [sys.executable, __file__, "--child"] + sys.argv[1:]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        rows.append((setting, json.loads(done.stdout.strip().splitlines()[-1])))
    print(f"{args.size} ({rows[0][1]['parameters'] / 1e6:.1f} M parameters), batch {args.batch} × up to "
          f"{args.length} tokens, p = {args.p}, {args.threads} threads, median of {args.rounds} rounds × "
          f"{args.steps} steps\n")
    print("| malloc tuning | vanilla ms/step | child_f ms/step | child_d ms/step | F / vanilla | D / vanilla | "
          "HF BERT ms/step | Fisher s (batches) |")
    print("|---|---|---|---|---|---|---|---|")
    for setting, r in rows:
        s = r["step_seconds"]
        hf = f"{s['hf_model'] * 1e3:.1f}" if "hf_model" in s else "–"
        print(f"| {'on' if setting == '1' else 'off'} | {s['vanilla'] * 1e3:.1f} | {s['child_f'] * 1e3:.1f} | "
              f"{s['child_d'] * 1e3:.1f} | {s['child_f'] / s['vanilla']:.3f} | {s['child_d'] / s['vanilla']:.3f} | "
              f"{hf} | {r['fisher_seconds']:.2f} ({r['fisher_batches']}) |")

if __name__ == "__main__":
    main()
