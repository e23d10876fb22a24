"""The GPU table: maskbench's training steps vs Hugging Face, eager and compiled, in one process.

Cases (sequence 128 unless said; bf16 autocast on a GPU, float32 on the CPU):
- bert-base, bert-large MLM (batch 256): maskbench's trainer step (`mlm` 15% masking on the CPU inside the
  step, static-shape sparse prediction, fused AdamW, clip 1.0) vs `BertForMaskedLM` (SDPA attention, fused
  AdamW, clip 1.0) fed batches masked ahead of time by `DataCollatorForLanguageModeling` and already on the
  device (Hugging Face's best case);
- t5-base span corruption (batch 64 x 512 encoder tokens): maskbench's trainer step vs
  `T5ForConditionalGeneration` on the same corrupted batches, made ahead of time;
- fine-tuning, variable lengths (batch 32, bert-base, 2 labels): `EncoderForSequenceClassification` with
  length-bucketed batches (`bucketed_batches`) vs `BertForSequenceClassification` with the usual random
  batches padded to their longest member; the same examples per window; tokens/s counts real tokens.
The two sides alternate window by window; after `--warmup` steps each, the median window gives tokens/s,
and the spread is (slowest - fastest window) / median. MFU: model FLOPs (the same count for both sides)
over the bf16 matmul peak measured in the same run (`peak.py`). Peak memory: `torch.cuda.max_memory_allocated`
per side.

Switches (each turns one speed-up off, to measure what it is worth): `--no-static` (dynamic predicted-row
count), `--no-flash` (SDPA's math kernel only), `--no-bucketing` (fine-tuning in random batches). The model's
speed switches (docs/pretraining.md "On a GPU") set maskbench's side: `--qkv-layout`, `--autocast-residual`,
`--fused-norm` (T5), `--compile-mode`; `--variants NAME...` adds, for each named switch, one more maskbench
side with that switch flipped, measured in the same alternation (the ablation: every side against the same
HF side, in one process). Memory: the peak allocated during a window above what was allocated when it began
(activations, gradients and temporaries of one step; the weights and optimiser states of the sides are
resident throughout).

    python benchmarks/bench_gpu.py                           # the full table on the GPU
    python benchmarks/bench_gpu.py --tiny --modes eager      # tiny shapes, any machine (CI runs this)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from peak import matmul_peak  # benchmarks/ is on sys.path when a script runs

FULL = {
    "bert-base": dict(size="bert-base", batch=256, seq=128),
    "bert-large": dict(size="bert-large", batch=256, seq=128),
    "t5-base": dict(size="t5-base", batch=64, seq=512),
    "finetune": dict(size="bert-base", batch=32, seq=128),
}
TINY_ENCODER = dict(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128)
TINY_T5 = dict(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4)
TINY = {
    "bert-base": dict(size="bert-base", batch=8, seq=32, overrides=TINY_ENCODER),
    "bert-large": dict(size="bert-large", batch=8, seq=32, overrides=TINY_ENCODER),
    "t5-base": dict(size="t5-base", batch=4, seq=64, overrides=TINY_T5),
    "finetune": dict(size="bert-base", batch=8, seq=32, overrides=TINY_ENCODER),
}
RATE = 0.15
VOCAB = {"bert": 30522, "t5": 32128}
SWITCHES = {"encoder": ("qkv_layout", "autocast_residual"), "t5": ("fused_norm",)}  # model keys per family
FAMILY = {"bert-base": "encoder", "bert-large": "encoder", "t5-base": "t5", "finetune": "encoder"}


def switches(args, family: str) -> dict:
    """The model's speed switches for maskbench's main side, from the command line."""
    chosen = {"qkv_layout": args.qkv_layout, "autocast_residual": args.autocast_residual,
              "fused_norm": args.fused_norm}
    return {k: chosen[k] for k in SWITCHES[family]}


def variants(args, family: str) -> dict[str, dict]:
    """Side name -> switches: the main side, then one side per `--variants` switch (flipped) of this family."""
    base = switches(args, family)
    sides = {"maskbench": base}
    for name in args.variants:
        if name in base:
            value = base[name]
            flipped = (not value) if isinstance(value, bool) else {"tokens": "heads", "heads": "tokens"}[value]
            label = f"{name}={'on' if flipped is True else 'off' if flipped is False else flipped}"
            sides[f"maskbench[{label}]"] = {**base, name: flipped}
    return sides


@dataclass
class Side:
    """One side of a case: `step(i)` runs training step i; `tokens(i)` counts what it processed."""

    step: object
    tokens: object
    flops: object  # FLOPs of step i (same formula for both sides)
    shapes: int = 1  # distinct batch shapes: warm-up visits each (first use of a shape plans its kernels)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# --- data ----------------------------------------------------------------------------------------------------

def build_data(root: Path, seq: int, tokens: int) -> Path:
    """A synthetic-corpus shard folder: the token windows both sides train on."""
    from maskbench.data import generate_corpus, prepare, train_tokenizer

    corpus = generate_corpus(root / "corpus", tokens=tokens, seed=0)
    train_tokenizer([corpus], kind="wordpiece", vocab_size=8000, out_path=root / "tok.json")
    prepare([corpus], root / "tok.json", root / "shards", seq_len=seq, val_fraction=0.02, seed=0, progress=False)
    return root / "shards"


# --- FLOPs ---------------------------------------------------------------------------------------------------

def encoder_flops(config, tokens: float, sequences: int, seq: float, labelled: float) -> float:
    """6·P_body·T + 6·(H·E + E·V)·T_labelled + 12·L·S²·H·B (matmuls of the layers, the MLM head on the
    labelled rows, attention scores and context)."""
    h, inter, layers = config.hidden_size, config.intermediate_size, config.num_layers
    body = layers * (4 * h * h + 2 * h * inter)
    head = h * config.embed_dim + config.embed_dim * config.vocab_size
    return 6 * body * tokens + 6 * head * labelled + 12 * layers * seq * seq * h * sequences


def t5_flops(config, batch: int, enc: int, dec: int) -> float:
    d, inner, ff = config.d_model, config.num_heads * config.d_kv, config.d_ff
    ff_params = (3 if config.feed_forward.startswith("gated") else 2) * d * ff
    dec_layers = config.num_decoder_layers or config.num_layers
    enc_body = config.num_layers * (4 * d * inner + ff_params)
    dec_body = dec_layers * (8 * d * inner + ff_params)
    attention = 12 * batch * inner * (config.num_layers * enc * enc + dec_layers * (dec * dec + dec * enc))
    return 6 * (enc_body * batch * enc + (dec_body + d * config.vocab_size) * batch * dec) + attention


# --- maskbench pretraining (the trainer's own step) ----------------------------------------------------------

def maskbench_pretrain(shards: Path, case: dict, objective: dict, compiled: bool, static: bool, precision: str,
                       device: torch.device, out: Path, model_switches: dict | None = None,
                       compile_mode: str = "default"):
    from maskbench.config import from_dict
    from maskbench.train import PretrainConfig
    from maskbench.train.loop import Trainer

    model = {"size": case["size"], **case.get("overrides", {}), **(model_switches or {})}
    if static and objective["name"] == "mlm":
        model["static_predictions"] = objective["mask_rate"]
    config = from_dict(PretrainConfig, {
        "data": {"shards": str(shards), "seq_len": case["seq"]},
        "model": model, "objective": objective,
        "optim": {"name": "adamw", "lr": 1e-4, "grad_clip": 1.0},
        "batch": {"size": case["batch"]}, "budget": {"steps": 10**9}, "precision": precision,
        "compile": compiled, "compile_mode": compile_mode, "device": device.type,
        "log": {"progress": False, "tensorboard": False, "every": 10**9},
        "checkpoint": {"every": 0, "final": False}, "eval": {"at_end": False},
    })
    trainer = Trainer.build(config, out)

    def step(index: int) -> None:
        """The trainer's next step (its own batch sequence; `index` only keeps the sides' counts equal)."""
        trainer.train_step()

    return trainer, step


def hf_mlm(trainer, compiled: bool, precision: str, device: torch.device, steps: int):
    import transformers
    from transformers import BertConfig, BertForMaskedLM, DataCollatorForLanguageModeling, PreTrainedTokenizerFast

    from maskbench.data.tokenizer import load_tokenizer

    transformers.logging.set_verbosity_error()
    c = trainer.raw_model.config
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=load_tokenizer(trainer.setup.tokenizer_path),
                                        pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                        mask_token="[MASK]")
    collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=RATE, return_tensors="pt")
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=c.vocab_size, hidden_size=c.hidden_size,
                                       num_hidden_layers=c.num_layers, num_attention_heads=c.num_heads,
                                       intermediate_size=c.intermediate_size, max_position_embeddings=c.max_positions,
                                       attn_implementation="sdpa")).to(device).train()
    batches = []
    for index in range(steps):  # masked ahead of time and already on the device: HF's best case
        ids = trainer.loader.get_global(index)["input_ids"]
        batch = collator([{"input_ids": row} for row in ids.tolist()])
        batches.append({k: batch[k].to(device) for k in ("input_ids", "attention_mask", "labels")})
    forward = torch.compile(model) if compiled else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=device.type == "cuda")

    def step(index: int) -> None:
        batch = batches[index % len(batches)]
        with autocast(device, precision):
            loss = forward(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def mlm_case(name: str, case: dict, args, shards: Path, compiled: bool, device, out: Path) -> dict[str, Side]:
    objective = {"name": "mlm", "mask_rate": RATE}
    sides, trainer = {}, None
    tokens = case["batch"] * case["seq"]
    for index, (side, model_switches) in enumerate(variants(args, "encoder").items()):
        trainer_i, mb_step = maskbench_pretrain(shards, case, objective, compiled, not args.no_static, args.precision,
                                                device, out / str(index), model_switches, args.compile_mode)
        trainer = trainer or trainer_i
        flops = encoder_flops(trainer_i.raw_model.config, tokens, case["batch"], case["seq"],
                              labelled=RATE * case["batch"] * (case["seq"] - 2))
        sides[side] = Side(mb_step, lambda i: tokens, lambda i, f=flops: f)
    hf_step = hf_mlm(trainer, compiled, args.precision, device, args.hf_batches)
    return {**sides, "hf": Side(hf_step, lambda i: tokens, lambda i: flops)}


def t5_case(name: str, case: dict, args, shards: Path, compiled: bool, device, out: Path) -> dict[str, Side]:
    import transformers
    from transformers import T5Config, T5ForConditionalGeneration

    from maskbench.train.evaluate import TRAIN_STREAM, stream_generator

    transformers.logging.set_verbosity_error()
    objective = {"name": "span_corruption"}
    sides, trainer = {}, None
    for index, (side, model_switches) in enumerate(variants(args, "t5").items()):
        trainer_i, mb_step = maskbench_pretrain(shards, case, objective, compiled, False, args.precision, device,
                                                out / str(index), model_switches, args.compile_mode)
        trainer = trainer or trainer_i
        sides[side] = mb_step
    c = trainer.raw_model.config
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(
        vocab_size=c.vocab_size, d_model=c.d_model, d_kv=c.d_kv, d_ff=c.d_ff, num_layers=c.num_layers,
        num_decoder_layers=c.num_decoder_layers or c.num_layers, num_heads=c.num_heads,
        relative_attention_num_buckets=c.relative_attention_num_buckets,
        relative_attention_max_distance=c.relative_attention_max_distance, dropout_rate=c.dropout,
        feed_forward_proj=c.feed_forward, tie_word_embeddings=c.tie_word_embeddings, pad_token_id=c.pad_id,
        decoder_start_token_id=c.pad_id, eos_token_id=c.eos_id))
    model = model.to(device).train()
    batches = []
    for index in range(args.hf_batches):  # corrupted ahead of time by maskbench's objective, on the device
        raw = trainer.loader.get_global(index)
        batch = trainer.setup.objective(raw, generator=stream_generator(0, TRAIN_STREAM, index))
        batches.append({k: batch[k].contiguous().to(device) for k in ("input_ids", "attention_mask", "labels")
                        if k in batch})
    enc, dec = batches[0]["input_ids"].shape[1], batches[0]["labels"].shape[1]
    forward = torch.compile(model) if compiled else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=device.type == "cuda")

    def hf_step(index: int) -> None:
        batch = batches[index % len(batches)]
        with autocast(device, args.precision):
            loss = forward(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    flops = t5_flops(c, case["batch"], enc, dec)
    tokens = case["batch"] * enc
    return {**{side: Side(step, lambda i: tokens, lambda i: flops) for side, step in sides.items()},
            "hf": Side(hf_step, lambda i: tokens, lambda i: flops)}


# --- fine-tuning with variable lengths -------------------------------------------------------------------------

def finetune_case(name: str, case: dict, args, shards: Path, compiled: bool, device, out: Path) -> dict[str, Side]:
    """Synthetic sentence classification whose lengths follow a GLUE-like long tail (log-normal, median
    ~26 tokens, capped at the sequence length); both sides see the same examples in each window."""
    import transformers
    from transformers import BertConfig, BertForSequenceClassification

    from maskbench.finetune.tasks import bucketed_batches, shuffled_batches
    from maskbench.models import EncoderForSequenceClassification, named_config

    transformers.logging.set_verbosity_error()
    rng = np.random.default_rng(0)
    n = case["batch"] * args.steps  # a window is one pass over the same examples, for either side
    lengths = np.clip(rng.lognormal(math.log(26 * case["seq"] / 128), 0.55, n).astype(int), 4, case["seq"])
    ids = [rng.integers(200, 8000, length) for length in lengths]
    labels = rng.integers(0, 2, n)
    order = (bucketed_batches(lengths, case["batch"], np.random.default_rng(1))
             if not args.no_bucketing else shuffled_batches(n, case["batch"], np.random.default_rng(1)))
    plain = shuffled_batches(n, case["batch"], np.random.default_rng(1))

    def padded(rows: np.ndarray) -> dict:
        width = int(lengths[rows].max())
        input_ids = np.zeros((len(rows), width), dtype=np.int64)
        for r, row in enumerate(rows):
            input_ids[r, :lengths[row]] = ids[row]
        mask = (np.arange(width)[None] < lengths[rows][:, None]).astype(np.int64)
        return {"input_ids": torch.from_numpy(input_ids).to(device), "attention_mask": torch.from_numpy(mask).to(device),
                "labels": torch.from_numpy(labels[rows]).to(device)}

    def side(model, batches_rows):
        batches = [padded(rows) for rows in batches_rows]
        real = [int(lengths[rows].sum()) for rows in batches_rows]
        forward = torch.compile(model, dynamic=True) if compiled else model
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01, fused=device.type == "cuda")

        def step(index: int) -> None:
            with autocast(device, args.precision):
                loss = forward(**batches[index % len(batches)])["loss"]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        def flops(index: int) -> float:
            rows = batches_rows[index % len(batches)]
            seqs = lengths[rows].astype(float)
            return encoder_flops(config, seqs.sum(), 1, 0, 0) + 12 * config.num_layers * config.hidden_size * float(
                (seqs**2).sum())

        return Side(step, lambda i: real[i % len(real)], flops, shapes=len(batches))

    sides = {}
    for name, model_switches in variants(args, "encoder").items():
        config = named_config(case["size"], vocab_size=VOCAB["bert"], **case.get("overrides", {}), **model_switches)
        ours = EncoderForSequenceClassification(config, num_labels=2, generator=torch.Generator().manual_seed(0))
        sides[name] = side(ours.to(device).train(), order)
    torch.manual_seed(0)
    hf = BertForSequenceClassification(BertConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads, intermediate_size=config.intermediate_size, num_labels=2,
        attn_implementation="sdpa"))
    return {**sides, "hf": side(hf.to(device).train(), plain)}


CASES = {"bert-base": mlm_case, "bert-large": mlm_case, "t5-base": t5_case, "finetune": finetune_case}


# --- timing --------------------------------------------------------------------------------------------------

def measure(sides: dict[str, Side], args, device) -> dict:
    """Warm up each side, then alternate windows; per side: median tokens/s, spread, peak memory."""
    for side in sides.values():
        for i in range(max(args.warmup, side.shapes)):
            side.step(i)
        sync(device)
    times = {name: [] for name in sides}
    tokens = {name: [] for name in sides}
    flops = {name: [] for name in sides}
    memory = dict.fromkeys(sides, 0)
    index = max(args.warmup, *(side.shapes for side in sides.values()))
    for window in range(args.windows):
        order = list(sides) if window % 2 == 0 else list(sides)[::-1]
        for name in order:
            side = sides[name]
            sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                resident = torch.cuda.memory_allocated(device)
            start = time.perf_counter()
            for i in range(index, index + args.steps):
                side.step(i)
            sync(device)
            times[name].append(time.perf_counter() - start)
            tokens[name].append(sum(side.tokens(i) for i in range(index, index + args.steps)))
            flops[name].append(sum(side.flops(i) for i in range(index, index + args.steps)))
            if device.type == "cuda":
                memory[name] = max(memory[name], torch.cuda.max_memory_allocated(device) - resident)
        index += args.steps
    result = {}
    for name in sides:
        rates = [t / s for t, s in zip(tokens[name], times[name])]
        step_ms = [1000 * s / args.steps for s in times[name]]
        median = statistics.median(step_ms)
        result[name] = {
            "tokens_per_s": statistics.median(rates),
            "step_ms": median,
            "spread": (max(step_ms) - min(step_ms)) / median,
            "flops_per_s": statistics.median(f / s for f, s in zip(flops[name], times[name])),
            "step_memory_gb": memory[name] / 2**30,
            "window_ms": step_ms,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--modes", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"])
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (any machine; CI)")
    parser.add_argument("--windows", type=int, default=6)
    parser.add_argument("--steps", type=int, default=8, help="steps per window")
    parser.add_argument("--warmup", type=int, default=4, help="steps per side before timing (compiles here)")
    parser.add_argument("--hf-batches", type=int, default=8, help="distinct batches prepared ahead for HF")
    parser.add_argument("--precision", choices=["fp32", "bf16"], help="default: bf16 on a GPU, fp32 on the CPU")
    parser.add_argument("--no-static", action="store_true", help="dynamic number of predicted rows")
    parser.add_argument("--no-flash", action="store_true", help="SDPA's math kernel only (no FlashAttention)")
    parser.add_argument("--no-bucketing", action="store_true", help="fine-tuning: random batches for maskbench too")
    parser.add_argument("--qkv-layout", choices=["tokens", "heads"], default="tokens", help="model.qkv_layout")
    parser.add_argument("--autocast-residual", action="store_true", help="model.autocast_residual = true")
    parser.add_argument("--fused-norm", action="store_true", help="model.fused_norm = true (T5)")
    parser.add_argument("--compile-mode", default="default", help="compile_mode (compiled runs)")
    parser.add_argument("--variants", nargs="*", default=[], choices=sorted({k for v in SWITCHES.values() for k in v}),
                        help="one more maskbench side per switch, flipped (the ablation)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON lines here")
    parser.add_argument("--shards", type=Path, help="a shard folder to read (default: a synthetic one, built here)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    shapes = TINY if args.tiny else FULL
    peak = matmul_peak(args.precision, device=device.type)
    info = (f"device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}; torch "
            f"{torch.__version__}, CUDA {torch.version.cuda}; {args.precision}; measured matmul peak "
            f"{peak / 1e12:.3g} TFLOP/s; median of {args.windows} windows x {args.steps} steps after "
            f"{args.warmup} warm-up steps; sides alternate")
    print(info, flush=True)
    attention = (torch.nn.attention.sdpa_kernel([torch.nn.attention.SDPBackend.MATH]) if args.no_flash
                 else contextlib.nullcontext())
    rows = []
    with tempfile.TemporaryDirectory() as tmp, attention:
        tmp = Path(tmp)
        shards = args.shards or build_data(tmp / "data", 128, tokens=60_000 if args.tiny else 1_000_000)
        for name in args.cases:
            for mode in args.modes:
                if name == "finetune" and mode == "compiled":
                    continue  # variable shapes: the comparison is eager (compiled HF recompiles per length)
                case = shapes[name]
                torch._dynamo.reset()
                sides = CASES[name](name, case, args, shards, mode == "compiled", device,
                                    tmp / f"run-{name}-{mode}")
                result = measure(sides, args, device)
                hf = result["hf"]
                model_switches = variants(args, FAMILY[name])
                for side, mb in result.items():
                    if side == "hf":
                        continue
                    row = {"case": name, "mode": mode, "side": side, "batch": case["batch"], "seq": case["seq"],
                           "maskbench": mb, "hf": hf, "ratio": mb["tokens_per_s"] / hf["tokens_per_s"],
                           "mfu_maskbench": mb["flops_per_s"] / peak, "mfu_hf": hf["flops_per_s"] / peak,
                           "peak_tflops": peak / 1e12,
                           "switches": {**{k: getattr(args, k) for k in ("no_static", "no_flash", "no_bucketing")},
                                        **model_switches[side],
                                        **({"compile_mode": args.compile_mode} if mode == "compiled" else {})}}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    if args.json:
                        with args.json.open("a") as f:
                            f.write(json.dumps(row) + "\n")
                del sides
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    print(f"\n{info}\n")
    print("| case | mode | maskbench side | maskbench tokens/s | MFU | HF tokens/s | HF MFU | ratio | "
          "step ms (mb / HF) | spread (mb / HF) | step GiB (mb / HF) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        mb, hf = r["maskbench"], r["hf"]
        print(f"| {r['case']} ({r['batch']}x{r['seq']}) | {r['mode']} | {r['side']} | {mb['tokens_per_s']:,.0f} | "
              f"{r['mfu_maskbench']:.1%} | {hf['tokens_per_s']:,.0f} | {r['mfu_hf']:.1%} | **{r['ratio']:.2f}x** | "
              f"{mb['step_ms']:.1f} / {hf['step_ms']:.1f} | {mb['spread']:.1%} / {hf['spread']:.1%} | "
              f"{mb['step_memory_gb']:.1f} / {hf['step_memory_gb']:.1f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
