#!/usr/bin/env bash
# One device session (docs: BENCHMARKS.md "On the GPU"): the bench_gpu table with the speed-switch ablation,
# compiled bert-base and bert-large, a short profile and the CUDA determinism check, in that order of
# priority. Each part has its own time limit, cut to what is left of SESSION_S seconds (default 390), so one
# slow part cannot starve the whole call. Everything is written to $OUT (default ./gpu-out).
# Run from the repository root:  bash benchmarks/gpu_session.sh [quick|full]
# `--tiny` shapes on a machine without a GPU:  TINY=1 bash benchmarks/gpu_session.sh
# On the device tool: copy the worktree (git ls-files -co --exclude-standard) into a git-ignored folder of the
# checkout the tool sends, with the tomli_w wheel in its .whl/, name that folder in `carry`, and run
#   cd <folder> && SESSION_S=390 bash benchmarks/gpu_session.sh quick      (timeout_s 420)
set -u
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
MODE=${1:-full}
SESSION_S=${SESSION_S:-390}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
if ls .whl/*.whl >/dev/null 2>&1; then  # packages the device image lacks (tomli_w), carried as wheels
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
PY=${PY:-python3}
TINY=${TINY:-}
tiny=${TINY:+--tiny}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"
} 2>&1 | tee -a "$OUT/session.log"
part() {  # part NAME SECONDS COMMAND...: run with a limit; everything goes to $OUT/session.log (few files come back)
  local name=$1 limit=$2; shift 2
  local left=$((SESSION_S - SECONDS - 5))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 20 ]; then
    echo "== $name: skipped, ${left}s left of the session" | tee -a "$OUT/session.log"
    return
  fi
  echo "== $name (limit ${limit}s, at ${SECONDS}s) $*" | tee -a "$OUT/session.log"
  local start=$SECONDS
  timeout -k 5 "$limit" "$@" 2>&1 | grep --line-buffered -v -E "Warning|warn\(" | tee -a "$OUT/session.log"
  echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - start))s" | tee -a "$OUT/session.log"
}
steps="--windows 4 --steps 6 --warmup 3"
[ "$MODE" = quick ] && steps="--windows 3 --steps 5 --warmup 2"
[ -n "$TINY" ] && steps="--windows 2 --steps 2 --warmup 1"
SHARDS=/tmp/maskbench-bench-data tokens=400000
[ -n "$TINY" ] && tokens=60000
[ -d $SHARDS/shards ] || $PY -c "import sys; sys.path.insert(0, 'benchmarks'); from pathlib import Path; \
from bench_gpu import build_data; build_data(Path('$SHARDS'), 128, tokens=$tokens)"
bench="$PY benchmarks/bench_gpu.py $tiny $steps --shards $SHARDS/shards"
# in order of priority; the eager parts carry the ablation of the model's switches (extra maskbench sides,
# one HF side per case)
variants="--variants qkv_layout autocast_residual fused_norm"
part eager-base 60 $bench --modes eager --cases bert-base $variants --json "$OUT/table.jsonl"
part compiled 150 $bench --modes compiled --cases bert-base --variants autocast_residual --json "$OUT/table.jsonl"
part eager 120 $bench --modes eager --cases finetune t5-base bert-large $variants --json "$OUT/table.jsonl"
part compiled-large 150 $bench --modes compiled --cases bert-large --json "$OUT/table.jsonl"
part profile 45 $PY benchmarks/profile_gpu.py $tiny --out "$OUT/profile.txt"
part determinism 90 $PY benchmarks/gpu_determinism.py $tiny --steps 16 --every 6 \
  --json "$OUT/determinism.json"
part profile-residual 45 $PY benchmarks/profile_gpu.py $tiny --autocast-residual --out "$OUT/profile-residual.txt"
echo "== session: ${SECONDS}s" | tee -a "$OUT/session.log"
