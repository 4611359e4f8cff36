"""CUDA source of nn_gpu's kernels, kept apart from CuPy so that it compiles without a GPU.

`CUDA_SOURCE` holds the math as templated device functions (T is float or double).
`KERNELS` lists each CuPy ElementwiseKernel as (name, in_params, out_params, operation); the
operations are one-line calls into CUDA_SOURCE. nn_gpu/kernels.py builds them with CuPy;
tests/test_cuda_source.py compiles the same text with NVRTC in CI, where there is no GPU.

Layout: Z is C x m, C-contiguous, one column per sample, so column i starts at Z + i and
its class k sits at Z[k * m + i]; the softmax kernels run one thread per column.
"""

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
__device__ __forceinline__ void nn_sgd_update(T g, T lr, T momentum, T weight_decay, T* p, T* v) {
    // d = g + weight_decay p;  v := momentum v + d;  p := p - lr v   (PyTorch's SGD)
    T d = g + weight_decay * *p;
    *v = momentum * *v + d;
    *p -= lr * *v;
}
"""

KERNELS = (
    # Z (H x m) in, A = ReLU(Z + b) out, in place; b (H x 1) broadcasts over samples.
    ("nn_gpu_bias_relu", "T b", "T z", "z = nn_relu<T>(z + b)"),
    # dA (H x m) in, dZ = dA * [A > 0] out, in place.
    ("nn_gpu_relu_backward", "T a", "T d", "d = nn_relu_backward<T>(d, a)"),
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
    # One thread per parameter of the flat buffers: the whole update in one kernel.
    (
        "nn_gpu_sgd_update",
        "T g, T lr, T momentum, T weight_decay",
        "T p, T v",
        "nn_sgd_update<T>(g, lr, momentum, weight_decay, &p, &v)",
    ),
)

# The fused training step of a 784-H-10 network (H <= FUSED_MAX_HIDDEN), used by nn_gpu/fused.py.
# X stays uint8 on the device (m x 784, one row per image) and is scaled by 1/255 inside the
# kernels. Parameters and gradient sums use the Network's flat layout: W1 (H x 784), b1 (H),
# W2 (10 x H), b2 (10). One step is three kernels, captured once into a CUDA graph:
#   nn_fused_forward_backward  one warp per sample: Z1, A1, Z2, softmax, loss, dZ2, dZ1; adds
#                              dW2, db2, db1 (per-block sums in shared memory, then one atomic
#                              per entry and block) and writes dZ1 (H x count)
#   nn_fused_weight_gradient   dW1 += dZ1 X^T / 255: a block per (256 pixels, 4096 / H samples),
#                              the samples' dZ1 in shared memory, zero pixels skipped
#   nn_fused_update            g /= count; the SGD update (nn_sgd_update); g = 0 for the next step
FUSED_MAX_HIDDEN = 32
FUSED_CHUNK = 128

FUSED_SOURCE = r"""
#define NN_PIXELS 784
#define NN_CLASSES 10
#define NN_MAX_HIDDEN 32
#define NN_CHUNK 128

template <typename T>
__device__ __forceinline__ T nn_warp_sum(T v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
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
        for (int h = 0; h < H; ++h) a1[h] = nn_relu<T>(nn_warp_sum(a1[h]) / (T)255 + b1[h]);  // A1 = ReLU(W1 X + b1)
        T z2[NN_CLASSES];  // Z2 = W2 A1 + b2, then dZ2 = softmax(Z2) - onehot(y) in place
        for (int k = 0; k < NN_CLASSES; ++k) {
            T acc = b2[k];
            for (int h = 0; h < H; ++h) acc += W2[k * H + h] * a1[h];
            z2[k] = acc;
        }
        T loss, correct;
        nn_softmax_cross_entropy_column<T>(z2, y[row], NN_CLASSES, 1, &loss, &correct);
        for (int e = lane; e < n_sums; e += 32) {  // the lanes share out the sums
            T value;
            if (e < H) {  // db1: dZ1 = W2^T dZ2 * [A1 > 0]
                T d = (T)0;
                for (int k = 0; k < NN_CLASSES; ++k) d += W2[k * H + e] * z2[k];
                value = a1[e] > (T)0 ? d : (T)0;
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
                                         const T* dZ1, T* grads) {
    __shared__ T dz[NN_MAX_HIDDEN * NN_CHUNK];  // dZ1 of this block's samples, H x chunk
    const int chunk = (NN_MAX_HIDDEN * NN_CHUNK) / H;  // fewer units, more samples per block
    const int first = blockIdx.y * chunk;
    const int n = min(chunk, count - first);
    for (int e = threadIdx.x; e < H * chunk; e += blockDim.x) {
        const int h = e / chunk, j = e % chunk;
        dz[e] = j < n ? dZ1[(long long)h * count + first + j] : (T)0;
    }
    __syncthreads();
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= NN_PIXELS) return;
    T acc[NN_MAX_HIDDEN];
    for (int h = 0; h < H; ++h) acc[h] = (T)0;
    for (int j = 0; j < n; ++j) {
        const T xp = (T)X[rows[first + j] * NN_PIXELS + p];  // consecutive threads, consecutive pixels
        if (xp != (T)0) {
            for (int h = 0; h < H; ++h) acc[h] += dz[h * chunk + j] * xp;
        }
    }
    for (int h = 0; h < H; ++h) atomicAdd(&grads[h * NN_PIXELS + p], acc[h] / (T)255);  // dW1 = dZ1 X^T
}

template <typename T>
__device__ void nn_fused_update(T* params, T* grads, T* velocity, long long size, const T* lr, T inverse_count,
                                T momentum, T weight_decay) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < size; i += (long long)gridDim.x * blockDim.x) {
        nn_sgd_update<T>(grads[i] * inverse_count, lr[0], momentum, weight_decay, &params[i], &velocity[i]);
        grads[i] = (T)0;
    }
}

#define NN_FUSED_KERNELS(T, SUFFIX)                                                                         \
    extern "C" __global__ void nn_fused_forward_backward_##SUFFIX(                                          \
        const unsigned char* X, const int* y, const long long* rows, int count, const T* params, int H,    \
        T* dZ1, T* grads, T* stats) {                                                                       \
        nn_fused_forward_backward<T>(X, y, rows, count, params, H, dZ1, grads, stats);                      \
    }                                                                                                       \
    extern "C" __global__ void nn_fused_weight_gradient_##SUFFIX(                                           \
        const unsigned char* X, const long long* rows, int count, int H, const T* dZ1, T* grads) {          \
        nn_fused_weight_gradient<T>(X, rows, count, H, dZ1, grads);                                         \
    }                                                                                                       \
    extern "C" __global__ void nn_fused_update_##SUFFIX(T* params, T* grads, T* velocity, long long size,    \
                                                        const T* lr, T inverse_count, T momentum,           \
                                                        T weight_decay) {                                   \
        nn_fused_update<T>(params, grads, velocity, size, lr, inverse_count, momentum, weight_decay);       \
    }

NN_FUSED_KERNELS(float, f32)
NN_FUSED_KERNELS(double, f64)
"""
