#!/usr/bin/env bash
# The GPU check (issue #15), from the repository root on a CUDA machine, in a few minutes:
#   1. tests/test_cuda.py (CUDA against CPU: heatmaps, explainers, metrics, losses, an AMP
#      training step, `aubench run --suite quick --device cuda`);
#   2. the benchmarks with AUBENCH_BENCH_DEVICE=cuda: heatmaps vs per-image OpenCV (goal ≥ 300×),
#      guided/baseline train step at the paper's setting (goal ≤ 1.05) with the heatmap share
#      (goal ≤ 1 %), cam-methods evaluation / bare forward+backward (goal ≤ 2×) and images/s,
#      its 9 metrics × 13 producers of a batch / forward+backward (goal ≤ 0.3, 64/112/224 px).
# Needs python3 with torch, timm, pandas, pyarrow, torchmetrics, opencv, pytest,
# pytest-benchmark, hypothesis, pyyaml…; aubench is used from the source tree, and the wheels in
# .whl/ (pydantic, grad-cam, captum, ttach) are unpacked into /tmp/site when present.
# Every section runs even if an earlier one fails; the exit status is non-zero if any failed.
# Output: ${OUT:-/tmp}/gpu.log, and $OUT/bench_<name>.json when OUT is set.
# Knobs: GPU_TRAIN_ROUNDS (8), GPU_EVAL_ROUNDS (2), GPU_SECTIONS ("tests heatmaps train eval"),
# GPU_WHEELS=0 (skip the .whl/ install, where those packages are already there), GPU_BENCH_DEVICE
# (cuda; cpu for a dry run of the plumbing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOGDIR="${OUT:-/tmp}"
mkdir -p "$LOGDIR"
LOG="$LOGDIR/gpu.log"
exec > >(tee "$LOG") 2>&1

if [ "${GPU_WHEELS:-1}" = 1 ] && [ -d .whl ] && compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 MPLBACKEND=Agg PYTHONUNBUFFERED=1

nvidia-smi || true
python3 - <<'EOF'
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
if torch.cuda.is_available():
    print(f"{torch.cuda.get_device_name()} (capability {torch.cuda.get_device_capability()})")
else:
    print("WARNING: torch.cuda.is_available() is False: the tests skip, the benchmarks fail")
print(f"threads {torch.get_num_threads()}")
EOF

# the fixture plugin: its pytest11 entry point exists only where aubench is pip-installed
PLUGIN=(-p aubench.bench.pytest_plugin)
if python3 -c "import importlib.metadata as m, sys; \
sys.exit(0 if any(e.name == 'aubench' for e in m.entry_points(group='pytest11')) else 1)"; then
    PLUGIN=()
fi

SECTIONS="${GPU_SECTIONS:-tests heatmaps train eval}"
declare -A STATUS=()
ORDER=()

section() {  # section NAME COMMAND…: run, time and record the exit status, never stop
    local name="$1" start rc
    shift
    echo
    echo "=== $name: $* ==="
    start=$SECONDS
    set +e
    "$@"
    rc=$?
    set -e
    STATUS[$name]=$rc
    ORDER+=("$name")
    echo "=== $name: exit $rc after $((SECONDS - start)) s ==="
}

bench() {  # bench NAME FILE [ENV=VALUE…]: one benchmark file on CUDA
    local name="$1" file="$2"
    shift 2
    local json=()
    if [ -n "${OUT:-}" ]; then
        json=(--benchmark-json "$OUT/bench_$name.json")
    fi
    section "bench-$name" env AUBENCH_BENCH_DEVICE="${GPU_BENCH_DEVICE:-cuda}" "$@" python3 -m pytest -q -s \
        --benchmark-only "${json[@]}" "benchmarks/$file"
}

for part in $SECTIONS; do
    case "$part" in
        tests)
            section tests python3 -m pytest -q -m cuda "${PLUGIN[@]}" tests/test_cuda.py ;;
        heatmaps)
            bench heatmaps test_bench_heatmaps.py ;;
        train)
            bench train_step test_bench_train_step.py \
                "AUBENCH_BENCH_ROUNDS=${GPU_TRAIN_ROUNDS:-8}" ;;
        eval)
            bench evaluation test_bench_evaluation.py \
                "AUBENCH_BENCH_ROUNDS=${GPU_EVAL_ROUNDS:-2}"
            bench scoring test_bench_scoring.py "AUBENCH_BENCH_ROUNDS=${GPU_EVAL_ROUNDS:-2}" ;;
        *)
            echo "unknown section $part (tests heatmaps train eval)"
            STATUS[$part]=2
            ORDER+=("$part") ;;
    esac
done

echo
echo "=== summary (total $SECONDS s) ==="
failed=0
for name in "${ORDER[@]}"; do
    echo "$name: exit ${STATUS[$name]}"
    if [ "${STATUS[$name]}" -ne 0 ]; then
        failed=1
    fi
done
exit "$failed"
