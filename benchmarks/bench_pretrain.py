"""Full pretraining steps per second: maskbench's trainer vs Hugging Face, same shapes and the same data.

One step = objective (masking) + forward + backward + gradient clipping + optimiser step + zero_grad.
- maskbench: `Trainer.train_step()` of `maskbench.train` (loader by index, `mlm` objective at 15%, sparse
  MLM head, fused AdamW, `zero_grad(set_to_none=True)`, no per-step host syncs beyond the NaN check);
- Hugging Face: `BertForMaskedLM` + `DataCollatorForLanguageModeling(mlm_probability=0.15)` +
  `torch.optim.AdamW` (its default implementation), clipping at 1.0 as HF's Trainer does.
Both read the same token windows (the same `PretrainBatches` indices of a synthetic-corpus shard
folder), with vocabulary 30,522, sequence 128, batch 32, dropout 0.1, float32 (or bf16 autocast). The
two sides alternate window by window in one process; the median window is reported. Each allocator
setting runs in its own subprocess (glibc malloc settings are process-wide): "tuned" calls
`maskbench.runtime.tune_allocator()` for both sides, "default" leaves glibc's defaults.

Model FLOPs per step (the same count for both sides, so MFU ratios equal speed ratios):
  6 · P_body · T  +  6 · (H·E + E·V) · T_labelled  +  12 · L · S² · H · B
(encoder matmuls, MLM transform + tied decoder on the labelled rows only, attention), T = B·S tokens.
Peak = best of a few 2048² matmuls in the same dtype, measured here.

    .venv/bin/python benchmarks/bench_pretrain.py                 # bert-tiny, bert-mini, bert-small; both allocators
    .venv/bin/python benchmarks/bench_pretrain.py --sizes bert-tiny --windows 5 --precision fp32 bf16
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from peak import matmul_peak  # benchmarks/ is on sys.path when a script runs

SIZES = {"bert-tiny": (2, 128, 2), "bert-mini": (4, 256, 4), "bert-small": (4, 512, 8)}  # layers, H, heads
VOCAB, SEQ, BATCH, RATE = 30522, 128, 32, 0.15


def model_flops(layers: int, hidden: int, labelled: float) -> float:
    intermediate = 4 * hidden
    body = layers * (4 * hidden * hidden + 2 * hidden * intermediate)
    tokens = BATCH * SEQ
    return 6 * body * tokens + 6 * (hidden * hidden + hidden * VOCAB) * labelled + 12 * layers * SEQ**2 * hidden * BATCH


def build_data(root: Path) -> Path:
    """A synthetic-corpus shard folder (the token ids both sides train on)."""
    from maskbench.data import generate_corpus, prepare, train_tokenizer

    corpus = generate_corpus(root / "corpus", tokens=400_000, seed=0)
    train_tokenizer([corpus], kind="wordpiece", vocab_size=8000, out_path=root / "tok.json")
    prepare([corpus], root / "tok.json", root / "shards", seq_len=SEQ, val_fraction=0.02, seed=0, progress=False)
    return root / "shards"


def maskbench_side(shards: Path, size: str, precision: str, out: Path):
    from maskbench.config import from_dict
    from maskbench.train import PretrainConfig
    from maskbench.train.loop import Trainer

    config = from_dict(PretrainConfig, {
        "data": {"shards": str(shards), "seq_len": SEQ},
        "model": {"size": size, "vocab_size": VOCAB},
        "objective": {"name": "mlm", "mask_rate": RATE},
        "optim": {"name": "adamw", "lr": 1e-4, "grad_clip": 1.0},
        "batch": {"size": BATCH}, "budget": {"steps": 10**9}, "precision": precision,
        "log": {"progress": False, "tensorboard": False}, "checkpoint": {"every": 0, "final": False},
        "eval": {"at_end": False},
    })
    trainer = Trainer.build(config, out)

    def step(index: int) -> None:
        """One step of the trainer's own sequence (batch `trainer.state.step`; shapes as `index`'s)."""
        trainer.train_step()

    return step, trainer.loader


def hf_side(loader, size: str, precision: str):
    import torch
    import transformers
    from transformers import BertConfig, BertForMaskedLM, DataCollatorForLanguageModeling, PreTrainedTokenizerFast

    from maskbench.data.tokenizer import load_tokenizer

    transformers.logging.set_verbosity_error()
    layers, hidden, heads = SIZES[size]
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=load_tokenizer(loader.shards.tokenizer_path),
                                        pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                        mask_token="[MASK]")
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers,
                                       num_attention_heads=heads, intermediate_size=4 * hidden,
                                       max_position_embeddings=512)).train()
    collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=RATE, return_tensors="pt")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def step(index: int) -> None:
        ids = loader.get_global(index)["input_ids"]
        batch = collator([{"input_ids": row} for row in ids.tolist()])
        with autocast:
            loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         labels=batch["labels"]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def worker(args) -> None:
    """One allocator setting: measure every size and precision, print JSON rows."""
    import torch

    from maskbench.runtime import tune_allocator

    tuned = tune_allocator() if args.allocator == "tuned" else tune_allocator(False)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        shards = Path(args.shards) if args.shards else build_data(Path(tmp))
        peaks = {p: matmul_peak(p) for p in args.precision}
        for size in args.sizes:
            for precision in args.precision:
                mb_step, loader = maskbench_side(shards, size, precision, Path(tmp) / f"run-{size}-{precision}")
                hf_step = hf_side(loader, size, precision)
                sides = {"maskbench": mb_step, "hf": hf_step}
                index = 0
                for fn in sides.values():  # warm-up
                    for i in range(args.warmup):
                        fn(i)
                times = {name: [] for name in sides}
                for window in range(args.windows):
                    order = list(sides) if window % 2 == 0 else list(sides)[::-1]
                    for name in order:
                        start = time.perf_counter()
                        for i in range(args.steps):
                            sides[name](index + i)
                        times[name].append((time.perf_counter() - start) / args.steps)
                    index += args.steps
                layers, hidden, _ = SIZES[size]
                flops = model_flops(layers, hidden, labelled=RATE * BATCH * (SEQ - 2))
                row = {"size": size, "precision": precision, "allocator": args.allocator, "tuned": tuned,
                       "threads": torch.get_num_threads()}
                for name, values in times.items():
                    median = statistics.median(values)
                    row[f"{name}_step_ms"] = 1000 * median
                    row[f"{name}_tokens_per_s"] = BATCH * SEQ / median
                    row[f"{name}_mfu"] = flops / median / peaks[precision]
                row["ratio"] = row["maskbench_tokens_per_s"] / row["hf_tokens_per_s"]
                row["peak_gflops"] = peaks[precision] / 1e9
                rows.append(row)
                print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4, help="steps per window")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--allocators", nargs="+", default=["tuned", "default"], choices=["tuned", "default"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    parser.add_argument("--allocator", help=argparse.SUPPRESS)
    parser.add_argument("--shards", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.allocator:
        worker(args)
        return
    rows = []
    for allocator in args.allocators:
        env = dict(os.environ, MASKBENCH_MALLOC_TUNING="1" if allocator == "tuned" else "0")
        command = [sys.executable, __file__, "--allocator", allocator, "--windows", str(args.windows),
                   "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads), "--sizes", *args.sizes,
                   "--precision", *args.precision]
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode:
            sys.exit(result.stderr)
        rows += [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    print(f"\nbatch {BATCH} x seq {SEQ}, vocab {VOCAB}, {RATE:.0%} masking; median of {args.windows} windows "
          f"x {args.steps} steps; threads {rows[0]['threads'] if rows else '?'}\n")
    print("| shape | precision | allocator | maskbench tokens/s | HF tokens/s | ratio | maskbench step ms | "
          "HF step ms | maskbench MFU | HF MFU |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['size']} | {r['precision']} | {r['allocator']} | {r['maskbench_tokens_per_s']:,.0f} | "
              f"{r['hf_tokens_per_s']:,.0f} | **{r['ratio']:.2f}x** | {r['maskbench_step_ms']:.1f} | "
              f"{r['hf_step_ms']:.1f} | {r['maskbench_mfu']:.1%} | {r['hf_mfu']:.1%} |")
    if rows:
        peaks = {r["precision"]: r["peak_gflops"] for r in rows}
        print("\nmeasured matmul peak: " + ", ".join(f"{p} {g:,.0f} GFLOP/s" for p, g in peaks.items()))


if __name__ == "__main__":
    main()
