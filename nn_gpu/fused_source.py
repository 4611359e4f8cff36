"""CUDA source of the fused training step of a 784-H-10 network (nn_gpu/fused.py builds it with CuPy),
kept apart from CuPy so that it compiles without a GPU: tests/test_cuda_source.py compiles it with
NVRTC in CI and tests/test_cuda_host.py compiles its math for the host. It includes CUDA_SOURCE's
device functions (nn_gpu/cuda_source.py).
"""

from nn_gpu.cuda_source import ceil_div
from nn_gpu.shapes import N_CLASSES, N_PIXELS

# The fused training step of a 784-H-10 network (H <= FUSED_MAX_HIDDEN), used by nn_gpu/fused.py.
# X stays uint8 on the device (m x 784, one row per image) and is scaled by 1/255 inside the
# kernels. Parameters and gradient sums use the Network's flat layout: W1 (H x 784), b1 (H),
# W2 (10 x H), b2 (10). One step is a memset of the gradient sums and three kernels, captured once
# into a CUDA graph:
#   nn_fused_forward_backward  one warp per sample: Z1, A1, Z2, softmax, loss, dZ2, dZ1; adds
#                              dW2, db2, db1 (per-block sums in shared memory, then one atomic
#                              per entry and block) and writes dZ1 (H x count)
#   nn_fused_weight_gradient   dW1 += dZ1 X^T / 255: a block per (256 pixels, `chunk` samples),
#                              the samples' dZ1 in shared memory, zero pixels skipped
#   nn_fused_update            g := g / count (the mean gradient, left in the gradient buffer as
#                              Network.gradients leaves it); the SGD update (nn_sgd_update)
# The launch geometry (fused_launch below) is sized by the batch and the card's SM count, so that
# a mini-batch of 128 still gives every SM work.
FUSED_MAX_HIDDEN = 32
FUSED_CHUNK = 128
FUSED_OPTIONS = ("--std=c++17",)  # NVRTC options of the fused step's RawModule
FUSED_THREADS = 256  # threads per block of the weight-gradient and update kernels
FUSED_MAX_BLOCKS = 1024  # the forward-backward and update kernels loop over the rest


def fused_launch(count: int, hidden: int, sms: int, parameters: int) -> dict:
    """Grid and block sizes of the fused step's kernels for a batch of `count` samples, H = `hidden`,
    `parameters` in the flat buffers, on a card with `sms` streaming multiprocessors.

    forward_backward: (blocks, threads); one warp per sample, so threads = 32 x samples per block,
        up to 8 per block, fewer when the batch is small (batch 128 on 132 SMs: 128 blocks of one
        warp, not 16 of eight). Its samples are s = block x warps + warp, in steps of blocks x warps.
    weight_gradient: (grid, threads, chunk); blockIdx.x takes 256 pixels, blockIdx.y the chunks of
        samples [first, first + chunk) with first = (y + k grid_y) chunk. chunk is at most
        FUSED_MAX_HIDDEN x FUSED_CHUNK / H (dZ1 of a chunk fits in shared memory) and small enough
        that a batch fills about 2 x sms blocks; grid_y stops at 8 x sms blocks in all, beyond which
        a block takes several chunks (fewer atomics, and no grid_y over CUDA's 65,535).
    update: (blocks, threads) over the parameters.
    """
    per_block = max(1, min(8, count // sms))
    pixel_blocks = ceil_div(N_PIXELS, FUSED_THREADS)
    largest = FUSED_MAX_HIDDEN * FUSED_CHUNK // hidden
    chunk = max(1, min(largest, ceil_div(count, ceil_div(2 * sms, pixel_blocks))))
    chunk_blocks = min(ceil_div(count, chunk), ceil_div(8 * sms, pixel_blocks))
    return {
        "forward_backward": (min(ceil_div(count, per_block), FUSED_MAX_BLOCKS), 32 * per_block),
        "weight_gradient": ((pixel_blocks, chunk_blocks), FUSED_THREADS, chunk),
        "update": (min(ceil_div(parameters, FUSED_THREADS), FUSED_MAX_BLOCKS), FUSED_THREADS),
    }


FUSED_SOURCE = (
    f"#define NN_PIXELS {N_PIXELS}\n#define NN_CLASSES {N_CLASSES}\n"
    f"#define NN_MAX_HIDDEN {FUSED_MAX_HIDDEN}\n#define NN_CHUNK {FUSED_CHUNK}\n"
    + r"""
template <typename T>
__device__ __forceinline__ T nn_warp_sum(T v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

// The per-sample math of the forward-backward kernel, one sample's column at a time (W1, b1, W2, b2
// as in the flat layout; a1 and z2 are the sample's A1 and Z2):
template <typename T>
__device__ __forceinline__ T nn_hidden_unit(T w1x, T b1) {
    // A1[h] = ReLU(W1[h] X / 255 + b1[h]), from w1x = the sum over pixels of W1[h][p] x[p], x in 0..255
    return nn_relu<T>(w1x / (T)255 + b1);
}

template <typename T>
__device__ __forceinline__ void nn_output_layer(const T* W2, const T* b2, const T* a1, int H, T* z2) {
    // Z2 = W2 A1 + b2: z2[k] = b2[k] + sum over h of W2[k][h] a1[h], k < NN_CLASSES
    for (int k = 0; k < NN_CLASSES; ++k) {
        T acc = b2[k];
        for (int h = 0; h < H; ++h) acc += W2[k * H + h] * a1[h];
        z2[k] = acc;
    }
}

template <typename T>
__device__ __forceinline__ T nn_hidden_delta(const T* W2, const T* dz2, T a1, int H, int h) {
    // dZ1[h] = (W2^T dZ2)[h] * ReLU'(Z1[h]), with a1 = A1[h]
    T d = (T)0;
    for (int k = 0; k < NN_CLASSES; ++k) d += W2[k * H + h] * dz2[k];
    return nn_relu_backward<T>(d, a1);
}

template <typename T>
__device__ void nn_fused_forward_backward(const unsigned char* X, const int* y, const long long* rows, int count,
                                          const T* params, int H, T* dZ1, T* grads, T* stats) {
    const T* W1 = params;
    const T* b1 = W1 + H * NN_PIXELS;
    const T* W2 = b1 + H;
    const T* b2 = W2 + NN_CLASSES * H;
    // Per-block sums of db1 (H), dW2 (10 x H), db2 (10), loss, correct: the same order as in `grads`
    // after W1, then the two statistics.
    __shared__ T sums[NN_MAX_HIDDEN + NN_CLASSES * NN_MAX_HIDDEN + NN_CLASSES + 2];
    const int n_sums = H + NN_CLASSES * H + NN_CLASSES + 2;
    for (int e = threadIdx.x; e < n_sums; e += blockDim.x) sums[e] = (T)0;
    __syncthreads();
    const int lane = threadIdx.x & 31;
    const int warps = blockDim.x >> 5;
    for (int s = blockIdx.x * warps + (threadIdx.x >> 5); s < count; s += gridDim.x * warps) {
        const long long row = rows[s];
        const unsigned char* x = X + row * NN_PIXELS;
        T a1[NN_MAX_HIDDEN];
        for (int h = 0; h < H; ++h) a1[h] = (T)0;
        for (int p = lane; p < NN_PIXELS; p += 32) {  // each lane takes every 32nd pixel
            const T xp = (T)x[p];
            if (xp != (T)0) {
                for (int h = 0; h < H; ++h) a1[h] += W1[h * NN_PIXELS + p] * xp;
            }
        }
        for (int h = 0; h < H; ++h) a1[h] = nn_hidden_unit<T>(nn_warp_sum(a1[h]), b1[h]);  // A1 = ReLU(W1 X + b1)
        T z2[NN_CLASSES];  // Z2 = W2 A1 + b2, then dZ2 = softmax(Z2) - onehot(y) in place
        nn_output_layer<T>(W2, b2, a1, H, z2);
        T loss, correct;
        nn_softmax_cross_entropy_column<T>(z2, y[row], NN_CLASSES, 1, &loss, &correct);
        for (int e = lane; e < n_sums; e += 32) {  // the lanes share out the sums
            T value;
            if (e < H) {  // db1 += dZ1 = W2^T dZ2 * [A1 > 0]
                value = nn_hidden_delta<T>(W2, z2, a1[e], H, e);
                dZ1[(long long)e * count + s] = value;
            } else if (e < H + NN_CLASSES * H) {  // dW2[k][h] += dZ2[k] A1[h]
                const int k = (e - H) / H, h = (e - H) % H;
                value = z2[k] * a1[h];
            } else if (e < H + NN_CLASSES * H + NN_CLASSES) {  // db2 += dZ2
                value = z2[e - H - NN_CLASSES * H];
            } else {
                value = e == n_sums - 2 ? loss : correct;
            }
            atomicAdd(&sums[e], value);
        }
    }
    __syncthreads();
    T* tail = grads + H * NN_PIXELS;  // db1, dW2, db2 follow W1 in the flat layout
    for (int e = threadIdx.x; e < n_sums; e += blockDim.x) {
        atomicAdd(e < n_sums - 2 ? &tail[e] : &stats[e - (n_sums - 2)], sums[e]);
    }
}

template <typename T>
__device__ void nn_fused_weight_gradient(const unsigned char* X, const long long* rows, int count, int H,
                                         int chunk, const T* dZ1, T* grads) {
    // Block (x, y) sums over its 256 pixels and the chunks of samples [first, first + chunk) with
    // first = (y + k gridDim.y) chunk, k = 0, 1, ...; H x chunk <= NN_MAX_HIDDEN x NN_CHUNK.
    __shared__ T dz[NN_MAX_HIDDEN * NN_CHUNK];  // dZ1 of the chunk's samples, H x chunk
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    T acc[NN_MAX_HIDDEN];
    for (int h = 0; h < H; ++h) acc[h] = (T)0;
    for (long long first = (long long)blockIdx.y * chunk; first < count; first += (long long)gridDim.y * chunk) {
        const int n = (int)min((long long)chunk, count - first);
        __syncthreads();  // every thread is done with the previous chunk's dz
        for (int e = threadIdx.x; e < H * chunk; e += blockDim.x) {
            const int h = e / chunk, j = e % chunk;
            dz[e] = j < n ? dZ1[(long long)h * count + first + j] : (T)0;
        }
        __syncthreads();
        if (p < NN_PIXELS) {
            for (int j = 0; j < n; ++j) {
                const T xp = (T)X[rows[first + j] * NN_PIXELS + p];  // consecutive threads, consecutive pixels
                if (xp != (T)0) {
                    for (int h = 0; h < H; ++h) acc[h] += dz[h * chunk + j] * xp;
                }
            }
        }
    }
    if (p < NN_PIXELS) {
        for (int h = 0; h < H; ++h) atomicAdd(&grads[h * NN_PIXELS + p], acc[h] / (T)255);  // dW1 = dZ1 X^T
    }
}

template <typename T>
__device__ void nn_fused_update(T* params, T* grads, T* velocity, long long size, const T* lr, T inverse_count,
                                T momentum, T weight_decay) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < size; i += (long long)gridDim.x * blockDim.x) {
        const T g = grads[i] * inverse_count;  // the mean gradient, kept as Network.gradients keeps it
        grads[i] = g;
        nn_sgd_update<T>(g, lr[0], momentum, weight_decay, &params[i], &velocity[i]);
    }
}

#define NN_FUSED_KERNELS(T, SUFFIX)                                                                         \
    extern "C" __global__ void nn_fused_forward_backward_##SUFFIX(                                          \
        const unsigned char* X, const int* y, const long long* rows, int count, const T* params, int H,    \
        T* dZ1, T* grads, T* stats) {                                                                       \
        nn_fused_forward_backward<T>(X, y, rows, count, params, H, dZ1, grads, stats);                      \
    }                                                                                                       \
    extern "C" __global__ void nn_fused_weight_gradient_##SUFFIX(                                           \
        const unsigned char* X, const long long* rows, int count, int H, int chunk, const T* dZ1, T* grads) { \
        nn_fused_weight_gradient<T>(X, rows, count, H, chunk, dZ1, grads);                                  \
    }                                                                                                       \
    extern "C" __global__ void nn_fused_update_##SUFFIX(T* params, T* grads, T* velocity, long long size,    \
                                                        const T* lr, T inverse_count, T momentum,           \
                                                        T weight_decay) {                                   \
        nn_fused_update<T>(params, grads, velocity, size, lr, inverse_count, momentum, weight_decay);       \
    }

NN_FUSED_KERNELS(float, f32)
NN_FUSED_KERNELS(double, f64)
"""
)
