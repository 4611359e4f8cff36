"""CUDA source of the fused training step of a 784-H-10 network (nn_gpu/fused.py builds it with CuPy),
kept apart from CuPy so that it compiles without a GPU: tests/test_cuda_source.py compiles it with
NVRTC in CI and tests/test_cuda_host.py runs its kernels on the host, block by block and thread by
thread. It needs CUDA_SOURCE and LAST_BLOCK_SOURCE (nn_gpu/cuda_source.py) before it.

A step is two kernels, and reads X from memory once:

    nn_tile_partials_H_T   a persistent grid of at most 2 blocks per SM; block b takes the tiles of
                           32 samples b, b + G, b + 2G, ... (G blocks) and writes its partial sums
                           of the gradient (the flat layout, then loss and correct) to its row of
                           the partials (nn_gpu/fused_tiles.py)
    nn_tile_sgd_T,         adds the rows entry by entry in a fixed order (block b takes entries
    nn_tile_adam_T         [32 b, 32 b + 32): eight groups of rows g, g + 8, ..., then the groups in
                           order), divides by the batch size (the mean gradient, left in the
                           gradient buffer as Network.gradients leaves it) and updates the parameter
                           with the step's row of the schedule table (nn_gpu.optim.ScheduleTable);
                           the last block counts the step done

There are no float atomics: a step gives the same bits every time it runs on the same grid. H is a
compile-time constant of each build (FUSED_HIDDEN), so every per-thread array is unrolled into
registers: ptxas reports no stack frame and no spills for any build (tests/test_cuda_source.py).
"""

from nn_gpu.cuda_source import ceil_div
from nn_gpu.fused_tiles import PARTIAL_SUMS_SOURCE
from nn_gpu.shapes import N_CLASSES, N_PIXELS

# Each build of the partial-sums kernel: (dtype, H, variant) -> (pieces ahead?, blocks an SM). A thread's dW1
# sums take H x 4 registers (x 2 in float64); where the next tile's pieces (28 registers) fit beside them
# without spills, a build holds them a tile ahead, one block an SM; H = 10 in float32 also comes without
# them, small enough (123 registers) for two blocks an SM: which is faster is for a card to say.
FUSED_BUILDS = {
    ("float32", 10, ""): (False, 2),
    ("float32", 10, "ahead"): (True, 1),
    ("float32", 16, ""): (True, 1),
    ("float32", 32, ""): (False, 1),
    ("float64", 10, ""): (False, 1),
    ("float64", 16, ""): (False, 1),
}
FUSED_HIDDEN = {
    dtype: tuple(h for d, h, variant in FUSED_BUILDS if d == dtype and not variant) for dtype in ("float32", "float64")
}
FUSED_TILE = 32  # samples a block takes at a time: one per lane of a warp
FUSED_CHUNKS = N_PIXELS // 16  # 16-byte pieces of an image row: 49
FUSED_THREADS = 224  # threads of a partial-sums block: one per 4 pixels (196), rounded up to whole warps
FUSED_REDUCE_THREADS = 256  # threads of a reducing block: 32 entries x FUSED_REDUCE_GROUPS groups of partial rows
FUSED_REDUCE_GROUPS = 8
FUSED_OPTIONS = ("--std=c++17",)  # NVRTC options of the fused step's RawModule
SUFFIXES = {"float32": "f32", "float64": "f64"}


def partials_kernel(dtype: str, hidden: int, variant: str = "") -> str:
    """The name of a build's partial-sums kernel."""
    return f"nn_tile_partials_{hidden}_{SUFFIXES[dtype]}" + (f"_{variant}" if variant else "")


def n_entries(hidden: int) -> int:
    """A row of partial sums: the flat gradient of 784-H-10 (W1, b1, W2, b2), then loss and correct."""
    return (N_PIXELS + 1 + N_CLASSES) * hidden + N_CLASSES + 2


def fused_launch(count: int, hidden: int, sms: int, blocks_per_sm: int = 1) -> dict:
    """The fused step's geometry for a batch of `count` samples, H = `hidden`, on `sms` SMs.

    tiles: the batch's tiles of FUSED_TILE samples; partials: (blocks, threads) of the partial-sums
    kernel, a persistent grid of blocks_per_sm x sms blocks (the build's, FUSED_BUILDS), never more
    than the tiles; entries: a row of partial sums; reduce: (blocks, threads) of the update kernel,
    32 entries a block.
    """
    tiles = ceil_div(count, FUSED_TILE)
    entries = n_entries(hidden)
    return {
        "tiles": tiles,
        "partials": (min(tiles, blocks_per_sm * sms), FUSED_THREADS),
        "entries": entries,
        "reduce": (ceil_div(entries, 32), FUSED_REDUCE_THREADS),
    }


def kernel_names() -> dict[str, int]:
    """Every entry function of FUSED_SOURCE, with the threads of a block it is launched with."""
    names = {partials_kernel(*build): FUSED_THREADS for build in FUSED_BUILDS}
    for suffix in SUFFIXES.values():
        names[f"nn_tile_sgd_{suffix}"] = names[f"nn_tile_adam_{suffix}"] = FUSED_REDUCE_THREADS
    return names


_PARTIALS = r"""
extern "C" __global__ void __launch_bounds__(NN_THREADS, {blocks}) {name}(
        const unsigned char* X, const int* y, const long long* order, long long count, const {T}* params,
        {T}* partials) {{
    __shared__ nn_tile_shared<{T}, {hidden}> sh;
    nn_tile_thread<{T}, {hidden}, {ahead}> st;
    nn_tile_partials<{T}, {hidden}, {ahead}, nn_tile_thread<{T}, {hidden}, {ahead}>&>(sh, st, X, y, order, count, params,
                                                                                   partials);
}}
"""

_UPDATES = r"""
extern "C" __global__ void nn_tile_sgd_{suffix}(const {T}* partials, int blocks, long long entries, long long count,
        {T}* p, {T}* g, {T}* v, const {T}* rows, long long window, long long* done, {T} momentum,
        {T} weight_decay, double* sums, unsigned int* arrived) {{
    __shared__ {T} groups[NN_REDUCE_GROUPS][32];
    nn_tile_sgd<{T}>(groups, partials, blocks, entries, count, p, g, v, rows, window, done, momentum, weight_decay,
                     sums, arrived);
}}
extern "C" __global__ void nn_tile_adam_{suffix}(const {T}* partials, int blocks, long long entries, long long count,
        {T}* p, {T}* g, {T}* m, {T}* v, const {T}* rows, long long window, long long* done, {T} beta1, {T} beta2,
        {T} eps, {T} l2, double* sums, unsigned int* arrived) {{
    __shared__ {T} groups[NN_REDUCE_GROUPS][32];
    nn_tile_adam<{T}>(groups, partials, blocks, entries, count, p, g, m, v, rows, window, done, beta1, beta2, eps, l2,
                      sums, arrived);
}}
"""

_SOURCE = (
    f"#define NN_PIXELS {N_PIXELS}\n#define NN_CLASSES {N_CLASSES}\n#define NN_TILE {FUSED_TILE}\n"
    f"#define NN_CHUNKS {FUSED_CHUNKS}\n#define NN_THREADS {FUSED_THREADS}\n#define NN_REDUCE_GROUPS {FUSED_REDUCE_GROUPS}\n"
    + r"""
template <int H>
__device__ __forceinline__ constexpr long long n_entries_of() {
    return (NN_PIXELS + 1 + NN_CLASSES) * H + NN_CLASSES + 2;  // a row of partial sums
}

"""
    + PARTIAL_SUMS_SOURCE
    + r"""
template <typename T>
__device__ __forceinline__ T nn_tile_group_sum(const T* partials, int blocks, long long entries, int t) {
    // Group g = t / 32's sum of entry e = 32 blockIdx.x + t % 32 over the rows g, g + 8, g + 16, ... in order
    const long long e = 32LL * blockIdx.x + t % 32;
    T sum = (T)0;
    if (e < entries) {
        for (int b = t / 32; b < blocks; b += NN_REDUCE_GROUPS) sum += partials[(long long)b * entries + e];
    }
    return sum;
}

template <typename T>
__device__ __forceinline__ bool nn_tile_total(const T (&groups)[NN_REDUCE_GROUPS][32], long long entries,
                                              double* sums, int t, T* total) {
    // Lane t of warp 0 adds the groups 0..7 of its entry in order: true, with the total of a gradient entry
    // (the caller updates it); the last two entries' totals go to the loss and correct sums
    const long long e = 32LL * blockIdx.x + t;
    if (t >= 32 || e >= entries) return false;
    *total = groups[0][t];
#pragma unroll
    for (int g = 1; g < NN_REDUCE_GROUPS; ++g) *total += groups[g][t];
    if (e < entries - 2) return true;
    sums[e - (entries - 2)] += (double)*total;
    return false;
}

template <typename T, typename Update>
__device__ __forceinline__ void nn_tile_reduce(T (&groups)[NN_REDUCE_GROUPS][32], const T* partials, int blocks,
                                               long long entries, long long count, T* g, long long* done,
                                               double* sums, unsigned int* arrived, Update update) {
    // g := the rows' sum / count for this block's entries, then update(i, g[i]) of each; the last block
    // counts the step done (every block has read done by then)
    NN_PHASE(NN_REDUCE_GROUPS * 32) groups[t / 32][t % 32] = nn_tile_group_sum<T>(partials, blocks, entries, t);
    NN_PHASE(NN_REDUCE_GROUPS * 32) {
        T total;
        if (nn_tile_total<T>(groups, entries, sums, t, &total)) {
            const long long i = 32LL * blockIdx.x + t;
            g[i] = total / (T)count;
            update(i, g[i]);
        }
    }
    NN_PHASE(NN_REDUCE_GROUPS * 32) {
        if (nn_last_block(arrived) && t == 0) done[0] += 1;
    }
}

template <typename T>
__device__ __forceinline__ void nn_tile_sgd(T (&groups)[NN_REDUCE_GROUPS][32], const T* partials, int blocks,
                                            long long entries, long long count, T* p, T* g, T* v, const T* rows,
                                            long long window, long long* done, T momentum, T weight_decay,
                                            double* sums, unsigned int* arrived) {
    // The update of nn_step_sgd at step t = done + 1's rate, rows[(t - 1) mod window]
    const T lr = rows[done[0] % window];
    nn_tile_reduce<T>(groups, partials, blocks, entries, count, g, done, sums, arrived, [&](long long i, T mean) {
        nn_sgd_update<T>(mean, lr, momentum, weight_decay, &p[i], &v[i]);
    });
}

template <typename T>
__device__ __forceinline__ void nn_tile_adam(T (&groups)[NN_REDUCE_GROUPS][32], const T* partials, int blocks,
                                             long long entries, long long count, T* p, T* g, T* m, T* v,
                                             const T* rows, long long window, long long* done, T beta1, T beta2,
                                             T eps, T l2, double* sums, unsigned int* arrived) {
    // The update of nn_step_adam: row (t - 1) mod window holds step t's step_size, root_correction2, shrink
    const T* row = rows + (done[0] % window) * 3;
    const T step_size = row[0], root_correction2 = row[1], shrink = row[2];
    nn_tile_reduce<T>(groups, partials, blocks, entries, count, g, done, sums, arrived, [&](long long i, T mean) {
        nn_adam_update<T>(mean, beta1, beta2, eps, l2, shrink, step_size, root_correction2, &p[i], &m[i], &v[i]);
    });
}
"""
)


def _kernels() -> str:
    types = {"float32": "float", "float64": "double"}
    parts = []
    for (dtype, hidden, variant), (ahead, blocks) in FUSED_BUILDS.items():
        name = partials_kernel(dtype, hidden, variant)
        parts.append(
            _PARTIALS.format(T=types[dtype], name=name, hidden=hidden, ahead=str(ahead).lower(), blocks=blocks)
        )
    for dtype, suffix in SUFFIXES.items():
        parts.append(_UPDATES.format(T=types[dtype], suffix=suffix))
    return "".join(parts)


FUSED_SOURCE = _SOURCE + _kernels()
