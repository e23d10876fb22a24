"""Forward+backward tokens/s: maskbench's encoder vs transformers' BertForMaskedLM / AlbertForMaskedLM.

Same config, same batches (15% of positions labelled, the rest -100), train mode (dropout on), both
sides alternating window by window in one process; the median window is reported. Each allocator
setting runs in its own subprocess (glibc malloc settings are process-wide): MASKBENCH_MALLOC_TUNING=1
applies `maskbench.runtime.tune_allocator()` to both sides, =0 leaves glibc's defaults.

Model FLOPs per step (the same count for both sides, so MFU ratios equal speed ratios):
  6 · P_body · T                      body matmuls (every Linear of the encoder except the pooler), fwd+bwd
+ 6 · (H·E + E·V) · T_labelled        MLM transform + tied decoder on the labelled rows only (the useful work)
+ 12 · L · S² · H · B                 attention scores and weighted sums (QKᵀ and AV, fwd+bwd)
T = B·S tokens. Peak = best of a few large square matmuls in the same dtype, measured here.

    .venv/bin/python benchmarks/bench_models.py            # full table (both allocator settings)
    .venv/bin/python benchmarks/bench_models.py --quick    # fewer windows
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from peak import matmul_peak  # benchmarks/ is on sys.path when a script runs

SIZES = {  # name: (maskbench size, overrides, batch, seq_len)
    "bert-tiny": ("bert-tiny", {}, 32, 128),
    "bert-mini": ("bert-mini", {}, 32, 128),
    "albert-base": ("albert-base", {"dropout": 0.1, "attention_dropout": 0.1}, 8, 128),
}


def model_flops(config, batch, seq_len, labelled) -> float:
    h, e, v, i, layers = (config.hidden_size, config.embed_dim, config.vocab_size, config.intermediate_size,
                          config.num_layers)
    body = layers * (4 * h * h + 2 * h * i) + (e * h if config.embedding_size is not None else 0)
    tokens = batch * seq_len
    return 6 * body * tokens + 6 * (h * e + e * v) * labelled + 12 * layers * seq_len ** 2 * h * batch


def hf_model(config):
    import transformers

    transformers.logging.set_verbosity_error()
    common = dict(vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
                  num_attention_heads=config.num_heads, intermediate_size=config.intermediate_size,
                  hidden_act=config.activation, hidden_dropout_prob=config.dropout,
                  attention_probs_dropout_prob=config.attention_dropout, max_position_embeddings=config.max_positions)
    if config.embedding_size is None:
        return transformers.BertForMaskedLM(transformers.BertConfig(**common))
    return transformers.AlbertForMaskedLM(transformers.AlbertConfig(embedding_size=config.embedding_size, **common))


def worker(args) -> None:
    """One allocator setting: every size × dtype, both sides alternating; prints one JSON line."""
    import torch

    from maskbench.models import EncoderForPretraining, named_config
    from maskbench.runtime import tune_allocator

    tuned = tune_allocator()
    torch.manual_seed(0)
    peaks = {"fp32": matmul_peak("fp32"), "bf16": matmul_peak("bf16")}
    print(json.dumps({"tuned": tuned, "peaks": peaks}), flush=True)
    for label in args.sizes:
        size, overrides, batch, seq_len = SIZES[label]
        config = named_config(size, **overrides)
        ours = EncoderForPretraining(config).train()
        theirs = hf_model(config).train()
        g = torch.Generator().manual_seed(1)
        batches = []
        for _ in range(4):
            ids = torch.randint(5, config.vocab_size, (batch, seq_len), generator=g)
            labels = torch.where(torch.rand(batch, seq_len, generator=g) < 0.15, ids, torch.full_like(ids, -100))
            batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids),
                            "token_type_ids": torch.zeros_like(ids), "labels": labels})
        labelled = statistics.mean(int((b["labels"] != -100).sum()) for b in batches)

        def step_ours(b):
            ours(**b)["loss"].backward()
            ours.zero_grad(set_to_none=True)

        def step_hf(b):
            theirs(**b).loss.backward()
            theirs.zero_grad(set_to_none=True)

        for dtype in args.dtypes:
            ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if dtype == "bf16" else \
                (lambda: torch.autocast("cpu", enabled=False))
            times = {"maskbench": [], "hf": []}
            for window in range(args.windows + 1):  # window 0 warms up
                for side, fn in (("maskbench", step_ours), ("hf", step_hf)) if window % 2 == 0 else \
                        (("hf", step_hf), ("maskbench", step_ours)):
                    t = time.perf_counter()
                    with ctx():
                        for s in range(args.steps):
                            fn(batches[s % len(batches)])
                    if window:
                        times[side].append((time.perf_counter() - t) / args.steps)
            flops = model_flops(config, batch, seq_len, labelled)
            for side, ts in times.items():
                med = statistics.median(ts)
                print(json.dumps({"size": label, "dtype": dtype, "side": side, "batch": batch, "seq_len": seq_len,
                                  "step_s": med, "tokens_per_s": batch * seq_len / med, "tuned": tuned,
                                  "mfu": flops / med / peaks[dtype], "gflops_per_s": flops / med / 1e9}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="steps per window")
    parser.add_argument("--quick", action="store_true", help="3 windows of 2 steps")
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--settings", nargs="+", default=["1", "0"], choices=["1", "0"],
                        help="allocator tuning settings to run (1 = tuned, 0 = glibc defaults)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.windows, args.steps = 3, 2
    if args.worker:
        worker(args)
        return
    headers, rows = [], {}
    for setting in args.settings:
        env = {**os.environ, "MASKBENCH_MALLOC_TUNING": setting}
        cmd = [sys.executable, __file__, "--worker", "--windows", str(args.windows), "--steps", str(args.steps),
               "--sizes", *args.sizes, "--dtypes", *args.dtypes]
        with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) as proc:
            for line in proc.stdout:  # one JSON line per measurement: a cut-short run still reports
                print(line.strip(), file=sys.stderr, flush=True)
                record = json.loads(line)
                if "peaks" in record:
                    headers.append(record)
                else:
                    rows[(record["tuned"], record["size"], record["dtype"], record["side"])] = record
    print(f"threads: {os.environ.get('OMP_NUM_THREADS', 'default')}; median of {args.windows} windows x "
          f"{args.steps} steps, sides alternating\n")
    for run in headers:
        p = run["peaks"]
        print(f"measured matmul peak (2048^2, this run): fp32 {p['fp32'] / 1e9:,.0f} GFLOP/s, "
              f"bf16 {p['bf16'] / 1e9:,.0f} GFLOP/s (allocator tuned: {run['tuned']})")
    print()
    print("| size | B×S | dtype | allocator tuned | maskbench tok/s | HF tok/s | speed-up | maskbench MFU | HF MFU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for tuned in sorted({k[0] for k in rows}, reverse=True):
        for size in args.sizes:
            for dtype in args.dtypes:
                a, b = rows.get((tuned, size, dtype, "maskbench")), rows.get((tuned, size, dtype, "hf"))
                if a is None or b is None:
                    continue
                print(f"| {size} | {a['batch']}×{a['seq_len']} | {dtype} | {'yes' if tuned else 'no'} | "
                      f"{a['tokens_per_s']:,.0f} | {b['tokens_per_s']:,.0f} | "
                      f"{a['tokens_per_s'] / b['tokens_per_s']:.2f}× | {a['mfu']:.1%} | {b['mfu']:.1%} |")

if __name__ == "__main__":
    main()
