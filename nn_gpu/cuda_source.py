"""CUDA source of nn_gpu's kernels, kept apart from CuPy so that it compiles without a GPU.

`CUDA_SOURCE` holds the math as templated device functions (T is float or double).
`KERNELS` lists each CuPy ElementwiseKernel as (name, in_params, out_params, operation); the
operations are one-line calls into CUDA_SOURCE. `STEP_SOURCE` holds the training step's raw
kernels (a batch gathered through the epoch's shuffle, the output layer, ReLU' with db, the
updates), which sum over samples and so need blocks that cooperate. nn_gpu/kernels.py builds them
all with CuPy; tests/test_cuda_source.py compiles the same text with NVRTC in CI, where there is no
GPU, and tests/test_cuda_host.py compiles it for the host with g++ and runs it against NumPy.

Layout: Z is C x m, C-contiguous, one column per sample, so column i starts at Z + i and
its class k sits at Z[k * m + i]; the softmax kernels run one thread per column.
"""


def ceil_div(a: int, b: int) -> int:
    """a / b rounded up: the blocks that cover a items, b a block."""
    return -(-a // b)


CUDA_SOURCE = r"""
template <typename T>
__device__ __forceinline__ T nn_relu(T z) {
    // ReLU(z) = max(z, 0)
    return z > (T)0 ? z : (T)0;
}

template <typename T>
__device__ __forceinline__ T nn_relu_backward(T dA, T A) {
    // dZ = dA * ReLU'(Z), with ReLU'(Z) = [Z > 0] = [A > 0] since A = ReLU(Z)
    return A > (T)0 ? dA : (T)0;
}

template <typename T>
__device__ __forceinline__ T nn_column_max(const T* z, int C, ptrdiff_t m, int* argmax) {
    // Largest of z[0], z[m], ..., z[(C - 1) m] and its first index.
    T zmax = z[0];
    *argmax = 0;
    for (int k = 1; k < C; ++k) {
        if (z[k * m] > zmax) {
            zmax = z[k * m];
            *argmax = k;
        }
    }
    return zmax;
}

template <typename T>
__device__ void nn_softmax_column(const T* z, T* a, int C, ptrdiff_t m) {
    // a = exp(z - max z) / sum exp(z - max z) for one column: never overflows.
    int argmax;
    T zmax = nn_column_max(z, C, m, &argmax);
    T s = (T)0;
    for (int k = 0; k < C; ++k) s += exp(z[k * m] - zmax);
    for (int k = 0; k < C; ++k) a[k * m] = exp(z[k * m] - zmax) / s;
}

template <typename T>
__device__ void nn_softmax_cross_entropy_column(T* z, int y, int C, ptrdiff_t m,
                                                T* loss, T* correct) {
    // In: logits z of one sample, label y. Out, in place: dZ = softmax(z) - onehot(y);
    // loss = -log softmax(z)[y] = log s - (z[y] - max); correct = [argmax z = y].
    int argmax;
    T zmax = nn_column_max(z, C, m, &argmax);
    T s = (T)0;
    for (int k = 0; k < C; ++k) s += exp(z[k * m] - zmax);
    *loss = log(s) - (z[y * m] - zmax);
    *correct = argmax == y ? (T)1 : (T)0;
    for (int k = 0; k < C; ++k) z[k * m] = exp(z[k * m] - zmax) / s - (k == y ? (T)1 : (T)0);
}

template <typename T>
__device__ void nn_output_column(T* z, const T* b, int y, int C, ptrdiff_t m, T eps, T eps_over_C,
                                 T* loss, T* correct) {
    // The output layer of one sample, in place: z = (W_L A_{L-1}) of its column becomes
    // Z_L = z + b_L, then dZ_L = softmax(Z_L) - onehot(y), then with label smoothing eps
    // dZ_L - eps / C + eps onehot(y) = softmax(Z_L) - ((1 - eps) onehot(y) + eps / C).
    // loss = -log softmax(Z_L)[y] (the plain cross-entropy); correct = [argmax Z_L = y].
    for (int k = 0; k < C; ++k) z[k * m] += b[k];
    nn_softmax_cross_entropy_column<T>(z, y, C, m, loss, correct);
    if (eps != (T)0) {
        for (int k = 0; k < C; ++k) z[k * m] -= eps_over_C;
        z[y * m] += eps;
    }
}

template <typename T>
__device__ __forceinline__ void nn_sgd_update(T g, T lr, T momentum, T weight_decay, T* p, T* v) {
    // d = g + weight_decay p;  v := momentum v + d;  p := p - lr v   (PyTorch's SGD)
    T d = g + weight_decay * *p;
    *v = momentum * *v + d;
    *p -= lr * *v;
}

template <typename T>
__device__ __forceinline__ void nn_adam_update(T g, T beta1, T beta2, T eps, T l2, T shrink, T step_size,
                                               T root_correction2, T* p, T* m, T* v) {
    // Kingma and Ba's Adam, as PyTorch computes it (step_size = lr / (1 - beta1^t) and
    // root_correction2 = sqrt(1 - beta2^t) carry the bias corrections of step t):
    // d = g + l2 p;  m := beta1 m + (1 - beta1) d;  v := beta2 v + (1 - beta2) d^2;
    // p := shrink p - step_size m / (sqrt(v) / root_correction2 + eps)
    // Adam's weight decay is L2 (l2 = weight_decay, shrink = 1); AdamW's is decoupled
    // (l2 = 0, shrink = 1 - lr weight_decay).
    T d = g + l2 * *p;
    *m = beta1 * *m + ((T)1 - beta1) * d;
    *v = beta2 * *v + ((T)1 - beta2) * d * d;
    *p = shrink * *p - step_size * *m / (sqrt(*v) / root_correction2 + eps);
}

// Philox4x64-10 (Salmon et al. 2011, Random123), the counter-based generator NumPy's Philox is: the
// block of four 64-bit words for counter (c0, c1, c2, c3) and key (k0, k1), in NumPy's order.
struct nn_philox_words {
    unsigned long long w0, w1, w2, w3;
};

__device__ __forceinline__ unsigned long long nn_mulhi64(unsigned long long a, unsigned long long b) {
#ifdef __CUDA_ARCH__
    return __umul64hi(a, b);
#else
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
#endif
}

__device__ __forceinline__ nn_philox_words nn_philox4x64_10(nn_philox_words c, unsigned long long k0,
                                                            unsigned long long k1) {
#pragma unroll
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {  // the key is bumped before every round but the first
            k0 += 0x9E3779B97F4A7C15ULL;
            k1 += 0xBB67AE8584CAA73BULL;
        }
        const unsigned long long hi0 = nn_mulhi64(0xD2E7470EE14C6C93ULL, c.w0), lo0 = 0xD2E7470EE14C6C93ULL * c.w0;
        const unsigned long long hi1 = nn_mulhi64(0xCA5A826395121157ULL, c.w2), lo1 = 0xCA5A826395121157ULL * c.w2;
        c = nn_philox_words{hi1 ^ c.w1 ^ k0, lo1, hi0 ^ c.w3 ^ k1, lo0};
    }
    return c;
}

__device__ __forceinline__ unsigned int nn_dropout_draw(unsigned long long k0, unsigned long long k1,
                                                        unsigned long long t, unsigned long long e) {
    // Draw number e (a uint32) of step t's stream for key (k0, k1): the 32-bit half e mod 2 (low
    // first) of word (e mod 8) / 2 of the Philox block with counter (e / 8 + 1, t, 0, 0). These are
    // the numbers np.random.Philox(counter=[0, t, 0, 0], key=[k0, k1]).random_raw() gives, read as
    // little-endian uint32 (nn_gpu.dropout.draws).
    const nn_philox_words w = nn_philox4x64_10(nn_philox_words{e / 8 + 1, t, 0, 0}, k0, k1);
    const unsigned int q = (unsigned int)(e % 8) / 2;
    const unsigned long long word = q == 0 ? w.w0 : q == 1 ? w.w1 : q == 2 ? w.w2 : w.w3;
    return (unsigned int)(e % 2 ? word >> 32 : word & 0xFFFFFFFFULL);
}

template <typename T>
__device__ __forceinline__ T nn_dropout_factor(unsigned long long k0, unsigned long long k1, unsigned long long t,
                                               unsigned long long e, unsigned int threshold, T scale) {
    // M = D / (1 - p) for element e: scale = 1 / (1 - p) where the unit is kept (its draw >= threshold,
    // threshold = p 2^32), 0 where it is dropped.
    return nn_dropout_draw(k0, k1, t, e) >= threshold ? scale : (T)0;
}
"""

KERNELS = (
    # Z (H x m) in, A = ReLU(Z + b) out, in place; b (H x 1) broadcasts over samples.
    ("nn_gpu_bias_relu", "T b", "T z", "z = nn_relu<T>(z + b)"),
    # A training step's hidden layer with dropout: A = ReLU(Z + b) * M, M drawn for step done + 1 and
    # element i = h m + j of Z (H x m); nothing of the mask is stored.
    (
        "nn_gpu_bias_relu_dropout",
        "T b, raw int64 done, uint64 key0, uint64 key1, uint32 threshold, T scale",
        "T z",
        "z = nn_relu<T>(z + b) * nn_dropout_factor<T>(key0, key1, done[0] + 1, i, threshold, scale)",
    ),
    # Dropout of the inputs A0 (n0 x m) of a training step, into a new array: A0 * M, element i = p m + j.
    (
        "nn_gpu_dropout",
        "T a, raw int64 done, uint64 key0, uint64 key1, uint32 threshold, T scale",
        "T out",
        "out = a * nn_dropout_factor<T>(key0, key1, done[0] + 1, i, threshold, scale)",
    ),
    # One thread per sample i < m: A[:, i] = softmax(Z[:, i]).
    (
        "nn_gpu_softmax",
        "raw T z, int32 n_classes",
        "raw T a",
        "nn_softmax_column<T>(&z[0] + i, &a[0] + i, n_classes, _ind.size())",
    ),
    # One thread per sample i: Z[:, i] becomes dZ[:, i]; loss[i] and correct[i] are written.
    (
        "nn_gpu_softmax_cross_entropy",
        "L y, int32 n_classes",
        "raw T z, T loss, T correct",
        "nn_softmax_cross_entropy_column<T>(&z[0] + i, (int)y, n_classes, _ind.size(), &loss, &correct)",
    ),
)

_DROPOUT_SCALARS = (None, None, None, None)  # key0, key1, threshold, scale
_DONE = (1, True, False)  # the step counter: one int64

# How nn_gpu calls each ElementwiseKernel, as CuPy sees the arguments once it has broadcast them and
# reduced their dimensions: one entry per parameter in KERNELS' order, None for a scalar, else
# (ndim, C-contiguous, grows with m), then the indexer's (ndim, grows with m). CuPy compiles one
# kernel per layout, dtype and index width; an array that grows with m is indexed with 64 bits once
# it spans over 2 GiB. nn_gpu/cuda_compile.py generates and compiles every one of them in CI, and
# tests/test_gpu.py checks on a card that CuPy built no other.
KERNEL_LAYOUTS = {
    "nn_gpu_bias_relu": (
        ((2, False, False), (2, True, True), (2, True)),  # b (H x 1) broadcast over Z (H x m): stride 0, 2-D
        ((1, True, False), (1, True, False), (1, False)),  # one sample (predict.py --image): both 1-D
    ),
    "nn_gpu_bias_relu_dropout": (((2, False, False), _DONE, *_DROPOUT_SCALARS, (2, True, True), (2, True)),),
    # A0 is the n0 x m transpose of the m x n0 samples (F-contiguous), and so is the new array
    "nn_gpu_dropout": (((2, False, True), _DONE, *_DROPOUT_SCALARS, (2, False, True), (2, True)),),
    "nn_gpu_softmax": (((2, True, True), None, (2, True, True), (1, True)),),  # raw Z, A (C x m); size=m
    "nn_gpu_softmax_cross_entropy": (
        (
            (1, True, True),
            None,
            (2, True, True),
            (1, True, True),
            (1, True, True),
            (1, True),
        ),  # y, raw Z, loss, correct
    ),
}

# The training step's raw kernels (nn_gpu/kernels.py launches them; STEP_THREADS threads a block, a
# power of two for the block sums). Sums over samples are made without float atomics: each block
# writes its partial sums, and the last block to finish (counted with an integer atomic, which it
# resets) adds them in block order, so a step gives the same bits on every run.
STEP_THREADS = 256
STEP_OPTIONS = ("--std=c++17",)  # NVRTC options of the step's RawModule

# What the step's kernels and the fused step's share: the last block of a grid to finish, found without a second launch
LAST_BLOCK_SOURCE = r"""
__device__ bool nn_last_block(unsigned int* arrived) {
    // True in every thread of the last block of the grid to get here. Each block's partial sums,
    // written before the call, are made visible to the other blocks first; the last block resets
    // the count for the next launch.
    __shared__ bool last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        last = atomicAdd(arrived, 1u) == gridDim.x * gridDim.y - 1;
        if (last) *arrived = 0;
    }
    __syncthreads();
    return last;
}
"""

STEP_SOURCE = (
    f"#define NN_STEP_THREADS {STEP_THREADS}\n"
    + LAST_BLOCK_SOURCE
    + r"""
#ifdef __CUDA_ARCH__
#define NN_LOAD_FRESH(p) __ldcg(p)  // another block wrote it: read past this SM's L1
#else
#define NN_LOAD_FRESH(p) (*(p))
#endif

__device__ double nn_block_sum(double v, double* shared) {
    // The sum of v over the block's threads (blockDim.x, a power of two), the same way every time;
    // every thread must call it, and every thread gets the sum.
    shared[threadIdx.x] = v;
    __syncthreads();
    for (unsigned int half = blockDim.x / 2; half > 0; half >>= 1) {
        if (threadIdx.x < half) shared[threadIdx.x] += shared[threadIdx.x + half];
        __syncthreads();
    }
    const double total = shared[0];
    __syncthreads();  // shared is free again for the next call
    return total;
}

template <typename T>
__device__ void nn_step_gather(const T* X, const int* y, const long long* order, const long long* done,
                               long long first, long long batches, long long size, long long count,
                               long long n0, T* A0, int* y_batch) {
    // Step t = done + 1's mini-batch: the samples order[start + j], j < count, start = ((t - 1 - first)
    // mod batches) size, of the m x n0 samples X, into A0 (count x n0, C-contiguous: the network takes
    // its n0 x count transpose) and their labels into y_batch. first: the steps before X's first epoch.
    const long long start = ((done[0] - first) % batches) * size;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < count * n0; e += stride) {
        const long long j = e / n0, p = e - j * n0;
        const long long row = order[start + j];
        A0[e] = X[row * n0 + p];
        if (p == 0) y_batch[j] = y[row];
    }
}

template <typename T>
__device__ void nn_step_output_layer(T* z, const T* b, const int* y, int C, long long m, T eps, T eps_over_C,
                                     T* db, double* partials, double* sums, unsigned int* arrived) {
    // The output layer of a batch: z = W_L A_{L-1} (C x m) becomes dZ_L in place (nn_output_column,
    // a thread per sample); db_L = the sum of dZ_L over samples (C); sums[0] and sums[1] gain the
    // batch's loss and correct predictions. partials: C + 2 per block.
    __shared__ double shared[NN_STEP_THREADS];
    const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long stride = (long long)gridDim.x * blockDim.x;
    double loss = 0.0, correct = 0.0;
    for (long long i = first; i < m; i += stride) {
        T sample_loss, sample_correct;
        nn_output_column<T>(z + i, b, y[i], C, m, eps, eps_over_C, &sample_loss, &sample_correct);
        loss += (double)sample_loss;
        correct += (double)sample_correct;
    }
    double* mine = partials + (long long)blockIdx.x * (C + 2);
    for (int k = 0; k < C; ++k) {  // this block's share of db: its own columns of dZ, written above
        double s = 0.0;
        for (long long i = first; i < m; i += stride) s += (double)z[k * m + i];
        s = nn_block_sum(s, shared);
        if (threadIdx.x == 0) mine[k] = s;
    }
    loss = nn_block_sum(loss, shared);
    correct = nn_block_sum(correct, shared);
    if (threadIdx.x == 0) {
        mine[C] = loss;
        mine[C + 1] = correct;
    }
    if (nn_last_block(arrived)) {
        for (int e = threadIdx.x; e < C + 2; e += blockDim.x) {
            double total = 0.0;
            for (unsigned int block = 0; block < gridDim.x; ++block) total += NN_LOAD_FRESH(partials + block * (C + 2) + e);
            if (e < C) {
                db[e] = (T)total;
            } else {
                sums[e - C] += total;
            }
        }
    }
}

template <typename T>
__device__ void nn_step_relu_backward_db(T* dA, const T* A, long long m, T scale, T* db, double* partials,
                                         unsigned int* arrived) {
    // dZ = dA * scale * [A > 0] in place (H x m; scale = 1 / (1 - p) with dropout, where A, the
    // layer's output after its mask, is 0 for every dropped unit), and db = the sum of dZ over
    // samples (H). Block (x, h) takes row h's columns x, x + gridDim.x, ... in blocks of blockDim.x.
    __shared__ double shared[NN_STEP_THREADS];
    const long long h = blockIdx.y;
    double s = 0.0;
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < m; j += (long long)gridDim.x * blockDim.x) {
        const long long e = h * m + j;
        const T d = nn_relu_backward<T>(dA[e] * scale, A[e]);
        dA[e] = d;
        s += (double)d;
    }
    s = nn_block_sum(s, shared);
    if (threadIdx.x == 0) partials[h * gridDim.x + blockIdx.x] = s;
    if (nn_last_block(arrived)) {
        for (long long row = threadIdx.x; row < gridDim.y; row += blockDim.x) {
            double total = 0.0;
            for (unsigned int part = 0; part < gridDim.x; ++part) total += NN_LOAD_FRESH(partials + row * gridDim.x + part);
            db[row] = (T)total;
        }
    }
}

template <typename T>
__device__ void nn_step_sgd(T* p, T* g, T* v, long long size, const T* rows, long long window, long long* done,
                            long long count, T momentum, T weight_decay, unsigned int* arrived) {
    // The update that ends step t = done + 1: g := g / count (the mean gradient, left in g), then
    // SGD (nn_sgd_update) at learning rate rows[(t - 1) mod window]; the last block counts the step done.
    const T lr = rows[done[0] % window];
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < size; i += stride) {
        const T mean = g[i] / (T)count;
        g[i] = mean;
        nn_sgd_update<T>(mean, lr, momentum, weight_decay, &p[i], &v[i]);
    }
    if (nn_last_block(arrived) && threadIdx.x == 0) done[0] += 1;
}

template <typename T>
__device__ void nn_step_adam(T* p, T* g, T* m, T* v, long long size, const T* rows, long long window,
                             long long* done, long long count, T beta1, T beta2, T eps, T l2, unsigned int* arrived) {
    // As nn_step_sgd, with Adam (nn_adam_update); row (t - 1) mod window holds step t's step_size,
    // root_correction2 and shrink.
    const T* row = rows + (done[0] % window) * 3;
    const T step_size = row[0], root_correction2 = row[1], shrink = row[2];
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < size; i += stride) {
        const T mean = g[i] / (T)count;
        g[i] = mean;
        nn_adam_update<T>(mean, beta1, beta2, eps, l2, shrink, step_size, root_correction2, &p[i], &m[i], &v[i]);
    }
    if (nn_last_block(arrived) && threadIdx.x == 0) done[0] += 1;
}

#define NN_STEP_KERNELS(T, SUFFIX)                                                                            \
    extern "C" __global__ void nn_step_gather_##SUFFIX(const T* X, const int* y, const long long* order,       \
                                                       const long long* done, long long first,                 \
                                                       long long batches, long long size, long long count,     \
                                                       long long n0, T* A0, int* y_batch) {                    \
        nn_step_gather<T>(X, y, order, done, first, batches, size, count, n0, A0, y_batch);                   \
    }                                                                                                         \
    extern "C" __global__ void nn_step_output_layer_##SUFFIX(T* z, const T* b, const int* y, int C,           \
                                                             long long m, T eps, T eps_over_C, T* db,         \
                                                             double* partials, double* sums,                  \
                                                             unsigned int* arrived) {                         \
        nn_step_output_layer<T>(z, b, y, C, m, eps, eps_over_C, db, partials, sums, arrived);                 \
    }                                                                                                         \
    extern "C" __global__ void nn_step_relu_backward_db_##SUFFIX(T* dA, const T* A, long long m, T scale,     \
                                                                 T* db, double* partials,                     \
                                                                 unsigned int* arrived) {                     \
        nn_step_relu_backward_db<T>(dA, A, m, scale, db, partials, arrived);                                  \
    }                                                                                                         \
    extern "C" __global__ void nn_step_sgd_##SUFFIX(T* p, T* g, T* v, long long size, const T* rows,          \
                                                    long long window, long long* done, long long count,       \
                                                    T momentum, T weight_decay, unsigned int* arrived) {      \
        nn_step_sgd<T>(p, g, v, size, rows, window, done, count, momentum, weight_decay, arrived);            \
    }                                                                                                         \
    extern "C" __global__ void nn_step_adam_##SUFFIX(T* p, T* g, T* m, T* v, long long size, const T* rows,   \
                                                     long long window, long long* done, long long count,      \
                                                     T beta1, T beta2, T eps, T l2, unsigned int* arrived) {  \
        nn_step_adam<T>(p, g, m, v, size, rows, window, done, count, beta1, beta2, eps, l2, arrived);         \
    }

NN_STEP_KERNELS(float, f32)
NN_STEP_KERNELS(double, f64)
"""
)
STEP_KERNELS = ("gather", "output_layer", "relu_backward_db", "sgd", "adam")  # nn_step_NAME_f32, _f64


def step_launch(kernel: str, work: int, sms: int, rows: int = 1) -> tuple[tuple[int, ...], int]:
    """(grid, threads) of a step kernel: `work` items (samples, columns of a row, parameters or
    elements) on a card of `sms` multiprocessors; for relu_backward_db, `rows` rows of that many
    columns each (grid (splits, rows): together about 4 blocks an SM, and no block without work).
    The grid depends on the work and the card alone, so a step's sums are added in the same order
    every time."""
    blocks = ceil_div(max(work, 1), STEP_THREADS)
    if kernel == "relu_backward_db":
        return (min(blocks, ceil_div(4 * sms, rows)), rows), STEP_THREADS
    most = {"gather": 8 * sms, "output_layer": 2 * sms, "sgd": 4 * sms, "adam": 4 * sms}[kernel]
    return (min(blocks, most),), STEP_THREADS
