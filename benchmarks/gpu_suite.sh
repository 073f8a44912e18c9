#!/usr/bin/env bash
# Every CUDA measurement of issue 13 in one call, for a GPU machine lent for a few minutes.
#
#   bash benchmarks/gpu_suite.sh            # from the repository root; results under $OUT (default runs/gpu_suite)
#
# WRITTEN IN A SESSION WITHOUT A GPU AND NOT YET RUN ON ONE: expect to fix small things on the
# first run. Each step has its own time limit, so one step that hangs or fails (it is logged
# to $OUT/<step>.err) does not lose the others; the steps' limits add up to about 8 minutes
# (495 s), and most steps end well before theirs. Give the device tool a timeout of about
# 540 s. Results are JSON lines in $OUT/<step>.jsonl; a summary is printed.
#
# Optional inputs, carried as ignored paths of this checkout (the device tool's `carry`), all made by
# `bash benchmarks/gpu_prepare.sh [ANCHOR_CHECKOUT]`:
#   runs/wheels/        wheels of missing pure-Python dependencies (gymnasium, farama-notifications,
#                       cloudpickle, tqdm, pyyaml, pytest and its dependencies for the GPU machine's
#                       Python), installed offline
#   runs/anchor_src/    a checkout of NM512/dreamerv3-torch: bench_vs_anchor.py on CUDA
#   runs/baseline_src/  a checkout of the commit before issue 13's changes: bench_learner.py --against
#
# Steps, most valuable first: env; eager float32 update (tiny and 12M proprio); the update captured
# in a CUDA graph (`cuda_graph: true`: capture time and steady time, float32 and bf16; the target is
# 12M at 30 ms or less); the GPU tests (graph replays train as eager); host syncs per update
# (check_cuda.py); the compiled update; the anchor side by side (eager and graphed); the baseline
# side by side (tiny, eager).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_suite}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PY:-python3}

step() {  # step NAME LIMIT_S COMMAND...: run with a time limit, keep its JSON lines, print a summary line
    local name=$1 limit=$2 start rc
    shift 2
    echo "== $name (limit ${limit}s): $*"
    start=$(date +%s)
    timeout -k 10 "$limit" "$@" >"$OUT/$name.jsonl" 2>"$OUT/$name.err"
    rc=$?
    echo "-- $name: rc=$rc in $(($(date +%s) - start)) s"
    grep -h '^{' "$OUT/$name.jsonl" | cut -c1-400 | tail -n 12
    [ $rc -eq 0 ] || tail -n 5 "$OUT/$name.err"
}

# -- environment -------------------------------------------------------------------------------
if ! $PY -c "import gymnasium, yaml, tqdm, pytest" 2>/dev/null && [ -d runs/wheels ]; then
    $PY -m pip install -q --no-index --find-links runs/wheels gymnasium pyyaml tqdm pytest >"$OUT/pip.log" 2>&1 || true
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$OUT/gpu.txt" 2>&1
$PY -c "import torch, sys; print({'torch': torch.__version__, 'cuda': torch.version.cuda, 'gpu': torch.cuda.get_device_name(0), 'python': sys.version.split()[0]})" | tee -a "$OUT/gpu.txt"

# the 12M preset: size12m since the official-shape presets, 12m before
S12=$(grep -q '^  size12m:' configs/defaults.yaml && echo size12m || echo 12m)
DEVICE=${DEVICE:-cuda}
B=(--batch 16 --length 64 --device "$DEVICE" --policy-steps 50)

# -- 1. eager float32: the reference (today 211-218 ms for 12m on an H200) -----------------------
step eager_fp32_proprio 60 $PY benchmarks/bench_learner.py --sizes tiny "$S12" --obs proprio --precision float32 --updates 10 --warmup 3 "${B[@]}"

# -- 2. the whole update in a CUDA graph: 3 eager updates, the capture (capture_s), then replays ----
step graph_fp32_proprio 60 $PY benchmarks/bench_learner.py --sizes tiny "$S12" --obs proprio --precision float32 --set cuda_graph=true --updates 20 --warmup 5 "${B[@]}"
step graph_bf16_proprio 45 $PY benchmarks/bench_learner.py --sizes "$S12" --obs proprio --precision bfloat16 --set cuda_graph=true --updates 20 --warmup 5 "${B[@]}"

# -- 3. graph replays train as eager updates do (same seeds and batches); capture errors surface here --
step gpu_tests 60 $PY -m pytest -q -p no:cacheprovider tests/test_update_graph.py -m gpu

# -- 4. host syncs per update (0 expected) and eager bf16 beside float32 ----------------------------
step syncs 45 $PY benchmarks/check_cuda.py --part eager --sizes "$S12" --fp32-sizes "$S12" --obs proprio --sync-size "$S12" --updates 5 --warmup 2 --policy-steps 50

# -- 5. compiled (the filter and imagination steps): first update = compile + run, then steady ------
step compile_fp32_proprio 90 $PY benchmarks/bench_learner.py --sizes "$S12" --obs proprio --precision float32 --compile --updates 10 --warmup 2 "${B[@]}"

# -- 6. side by side with dreamerv3-torch at equal shapes (target: >= 3x faster) --------------------
if [ -f runs/anchor_src/models.py ]; then
    step vs_anchor 45 $PY benchmarks/bench_vs_anchor.py --anchor runs/anchor_src --device cuda --rounds 10 --warmup 3 --anchor-mlp ours
    step vs_anchor_graph 45 $PY benchmarks/bench_vs_anchor.py --anchor runs/anchor_src --device cuda --rounds 10 --warmup 5 --anchor-mlp defaults ours --cuda-graph
else
    echo "== vs_anchor: skipped (no runs/anchor_src)"
fi

# -- 7. side by side with the code before issue 13 (eager both) -----------------------------------
if [ -f runs/baseline_src/benchmarks/bench_learner.py ]; then
    step vs_baseline 45 $PY benchmarks/bench_learner.py --against runs/baseline_src --sizes tiny --obs proprio --precision float32 --rounds 2 --updates 10 --warmup 3 "${B[@]}"
else
    echo "== vs_baseline: skipped (no runs/baseline_src)"
fi
echo "== done: results in $OUT"
