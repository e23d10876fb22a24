"""Where a maskbench bert-base pretraining step spends its device time: torch.profiler over a few eager
steps of the trainer's own step (after warm-up), the top kernels by device time and the share by kind.

    python benchmarks/profile_gpu.py --out profile.txt        # bert-base 256 x 128 on the GPU
    python benchmarks/profile_gpu.py --tiny --out profile.txt # any machine
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from bench_gpu import FULL, TINY, build_data, maskbench_pretrain

KINDS = {  # by the aten operator that launched the kernel (kernel names vary between libraries)
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::linear", "aten::matmul"),
    "attention": ("attention",),
    "layernorm": ("layer_norm",),
    "copy / cast": ("aten::copy_", "aten::_to_copy"),
    "concatenation": ("aten::cat",),
    "gelu": ("gelu",),
    "optimizer": ("adam",),
    "cross-entropy": ("log_softmax", "nll_loss"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--no-static", action="store_true")
    parser.add_argument("--qkv-layout", choices=["tokens", "heads"], default="tokens", help="model.qkv_layout")
    parser.add_argument("--autocast-residual", action="store_true", help="model.autocast_residual = true")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    case = (TINY if args.tiny else FULL)["bert-base"]
    with tempfile.TemporaryDirectory() as tmp:
        shards = build_data(Path(tmp) / "data", 128, tokens=60_000 if args.tiny else 400_000)
        _, step = maskbench_pretrain(shards, case, {"name": "mlm", "mask_rate": 0.15}, False, not args.no_static,
                                     "bf16" if cuda else "fp32", device, Path(tmp) / "run",
                                     {"qkv_layout": args.qkv_layout, "autocast_residual": args.autocast_residual})
        for i in range(3):
            step(i)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            for i in range(3, 3 + args.steps):
                step(i)
            if cuda:
                torch.cuda.synchronize()
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    attr = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(getattr(e, attr) for e in events) or 1.0
    shares = dict.fromkeys(KINDS, 0.0)
    for e in events:
        for kind, words in KINDS.items():
            if any(w in e.key for w in words):
                shares[kind] += getattr(e, attr) / total
                break
    lines = [f"device time {total / 1e3 / args.steps:.1f} ms per step over {args.steps} steps"]
    lines += [f"{kind}: {share:.1%}" for kind, share in shares.items()]
    lines += [f"other: {1 - sum(shares.values()):.1%}", "", prof.key_averages().table(sort_by=sort, row_limit=30)]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines[:len(KINDS) + 2]))


if __name__ == "__main__":
    main()
