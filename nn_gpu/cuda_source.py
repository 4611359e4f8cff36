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
)
