"""CUDA source of the fused step's first kernel, nn_tile_partials (nn_gpu/fused_source.py adds the
constants it names, the update kernel and the entry points): one block's partial sums of the
gradient of a 784-H-10 network over its tiles of samples, its images read from memory once.

A block takes a tile of NN_TILE samples at a time. Each of its NN_THREADS threads copies its pieces
of the tile's uint8 images into shared memory (the next tile's copy, held in registers, is in flight
while this one is worked on), then, separated by barriers (NN_PHASE):

    A1 = ReLU(W1 x / 255 + b1)    warp w computes hidden units [w HS, w HS + HS), its lane s sample s
    Z2, dZ2, dZ1                  warp 0, its lane s sample s: the output layer, the softmax and the
                                  loss (the plain path's own function), ReLU'
    dW1 += dZ1 x^T                thread t: pixels 4t .. 4t + 3 for every hidden unit, in registers
    db1, dW2, db2 += ...          thread t: entries t, t + NN_THREADS, ... of those

and at the end writes its sums to its row of the partials. Every loop over samples and pixels runs
in order, so a block's row is the same bits every time. nn_tile_partials takes each thread's state
as a reference on the card, and as an array indexed by thread on the host, where
tests/test_cuda_host.py runs the phases thread after thread.
"""

PARTIAL_SUMS_SOURCE = r"""
__device__ __forceinline__ float nn_byte_value(unsigned int word, int j, float) {
    // Byte j of word (0..255) as a float, exactly: PRMT makes the float 2^23 + byte (the byte in the
    // low mantissa bits under 2^23's exponent, 0x4B), and one subtraction takes 2^23 away.
    return __uint_as_float(__byte_perm(word, 0x4B000000u, 0x7440u | (unsigned int)j)) - 8388608.0f;
}

__device__ __forceinline__ double nn_byte_value(unsigned int word, int j, double) {
    return (double)((word >> (8 * j)) & 255u);
}

__device__ __forceinline__ uint4 nn_load_piece(const unsigned char* p) {
    // 16 bytes of X at p (16-byte aligned: rows are 784 = 49 x 16 bytes), through the read-only cache
#ifdef __CUDA_ARCH__
    return __ldg(reinterpret_cast<const uint4*>(p));
#else
    uint4 piece;
    memcpy(&piece, p, sizeof piece);
    return piece;
#endif
}

template <typename T>
__device__ __forceinline__ void nn_load4(const T* p, T* v) {
    // v[0..3] = p[0..3], p 16-byte aligned (a row of W1 is 784 values), in 16-byte loads
#ifdef __CUDA_ARCH__
    if constexpr (sizeof(T) == 4) {
        const float4 q = __ldg(reinterpret_cast<const float4*>(p));
        v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
    } else {
        const double2 q = __ldg(reinterpret_cast<const double2*>(p)), r = __ldg(reinterpret_cast<const double2*>(p) + 1);
        v[0] = q.x, v[1] = q.y, v[2] = r.x, v[3] = r.y;
    }
#else
    for (int i = 0; i < 4; ++i) v[i] = p[i];
#endif
}

template <typename T, int H>
struct nn_tile_shared {
    uint4 x[NN_TILE][NN_CHUNKS];     // the tile's images: sample s's pixels 16c .. 16c + 15 in x[s][c]
    T a1[H][NN_TILE + 1];            // A1, dZ1 and dZ2 of the tile, a column per sample (rows padded by
    T dz1[H][NN_TILE + 1];           // one: a warp reading one column of several rows hits distinct banks)
    T dz2[NN_CLASSES][NN_TILE + 1];
    T lanes[2][NN_TILE];             // loss and correct of each lane of warp 0, added in lane order at the end
};

template <typename T, int H, bool A>
struct nn_tile_thread {
    static constexpr int pieces = (NN_TILE * NN_CHUNKS + NN_THREADS - 1) / NN_THREADS;
    // A: the next tile's pieces are loaded into registers a tile ahead (all of them), or else each
    // tile's are loaded when it is stored, which leaves the registers for two blocks on an SM
    static constexpr int ahead = A ? pieces : 0;
    static constexpr int smalls = (H + NN_CLASSES * H + NN_CLASSES + NN_THREADS - 1) / NN_THREADS;
    uint4 next[ahead > 0 ? ahead : 1];  // the next tile's pieces t + i NN_THREADS, i < ahead
    T dW1[H][4];         // sum over the block's samples of dZ1[h] x[p], x in 0..255, for its pixels 4t .. 4t + 3
    T small[smalls];     // its entries t + i NN_THREADS of db1 (H), dW2 (10 x H), db2 (10), summed likewise
    T loss, correct;     // lanes of warp 0: summed over their samples
};

__device__ __forceinline__ uint4 nn_tile_piece(const unsigned char* X, const long long* order, long long count,
                                               long long tile, int e) {
    // Piece e of tile `tile`: its sample e / 49's pixels 16 (e % 49) .. + 15, or zeros past the batch
    const long long sample = tile * NN_TILE + e / NN_CHUNKS;
    if (e >= NN_TILE * NN_CHUNKS || sample >= count) return make_uint4(0u, 0u, 0u, 0u);
    return nn_load_piece(X + (order ? order[sample] : sample) * NN_PIXELS + 16 * (e % NN_CHUNKS));
}

template <typename T, int H, bool A>
__device__ __forceinline__ void nn_tile_fetch(nn_tile_thread<T, H, A>& st, const unsigned char* X,
                                              const long long* order, long long count, long long tile, int t) {
    // Into registers, a tile ahead: pieces t + i NN_THREADS of tile `tile`, i < ahead
#pragma unroll
    for (int i = 0; i < nn_tile_thread<T, H, A>::ahead; ++i) st.next[i] = nn_tile_piece(X, order, count, tile, t + i * NN_THREADS);
}

template <typename T, int H, bool A>
__device__ __forceinline__ void nn_tile_store(nn_tile_shared<T, H>& sh, const nn_tile_thread<T, H, A>& st,
                                              const unsigned char* X, const long long* order, long long count,
                                              long long tile, int t) {
    // Tile `tile` into shared memory: the pieces fetched ahead, then those loaded now
#pragma unroll
    for (int i = 0; i < nn_tile_thread<T, H, A>::pieces; ++i) {
        const int e = t + i * NN_THREADS;
        const uint4 piece = i < nn_tile_thread<T, H, A>::ahead ? st.next[i] : nn_tile_piece(X, order, count, tile, e);
        if (e < NN_TILE * NN_CHUNKS) sh.x[e / NN_CHUNKS][e % NN_CHUNKS] = piece;
    }
}

template <typename T, int H>
__device__ __forceinline__ void nn_tile_hidden(nn_tile_shared<T, H>& sh, const T* W1, const T* b1, int t) {
    // A1[h] = ReLU(W1[h] x / 255 + b1[h]) for sample s = lane, h in warp w's [w HS, w HS + HS), over the
    // pixels in order, 16 at a time (a piece of zeros adds nothing and is skipped)
    constexpr int warps = NN_THREADS / 32;
    constexpr int HS = (H + warps - 1) / warps;
    const int s = t % 32, h0 = (t / 32) * HS;
    if (h0 >= H) return;
    T z[HS];
#pragma unroll
    for (int i = 0; i < HS; ++i) z[i] = (T)0;
    for (int c = 0; c < NN_CHUNKS; ++c) {
        const uint4 piece = sh.x[s][c];
        if ((piece.x | piece.y | piece.z | piece.w) == 0u) continue;
        const unsigned int words[4] = {piece.x, piece.y, piece.z, piece.w};
#pragma unroll
        for (int q = 0; q < 4; ++q) {  // pixels 16c + 4q .. 16c + 4q + 3
            T x[4];
#pragma unroll
            for (int j = 0; j < 4; ++j) x[j] = nn_byte_value(words[q], j, T());
#pragma unroll
            for (int i = 0; i < HS; ++i) {
                if (h0 + i < H) {
                    T w[4];
                    nn_load4<T>(W1 + (h0 + i) * NN_PIXELS + 16 * c + 4 * q, w);
#pragma unroll
                    for (int j = 0; j < 4; ++j) z[i] += w[j] * x[j];
                }
            }
        }
    }
#pragma unroll
    for (int i = 0; i < HS; ++i) {
        if (h0 + i < H) sh.a1[h0 + i][s] = nn_relu<T>(z[i] / (T)255 + b1[h0 + i]);
    }
}

template <typename T, int H, bool A>
__device__ __forceinline__ void nn_tile_output(nn_tile_shared<T, H>& sh, nn_tile_thread<T, H, A>& st, const T* W2,
                                               const T* b2, const int* y, const long long* order, long long count,
                                               long long tile, int t) {
    // Lane s of warp 0, sample s: Z2 = W2 A1 + b2, then in place dZ2 = softmax(Z2) - onehot(y) (the plain
    // path's own nn_softmax_cross_entropy_column, on the tile's column), dZ1 = W2^T dZ2 * [A1 > 0]. Past
    // the batch: zeros in A1, dZ2 and dZ1, and nothing added to the loss. The sample's columns stay in
    // shared memory and W2 is read where it is used, which leaves the registers to the thread's state.
    if (t >= NN_TILE) return;
    const long long sample = tile * NN_TILE + t;
    const bool inside = sample < count;
#pragma unroll 1
    for (int k = 0; k < NN_CLASSES; ++k) {
        T acc = b2[k];
#pragma unroll
        for (int h = 0; h < H; ++h) acc += W2[k * H + h] * sh.a1[h][t];
        sh.dz2[k][t] = inside ? acc : (T)0;
    }
    if (inside) {
        T loss, correct;
        nn_softmax_cross_entropy_column<T>(&sh.dz2[0][t], y[order ? order[sample] : sample], NN_CLASSES, NN_TILE + 1,
                                           &loss, &correct);
        st.loss += loss, st.correct += correct;
    }
#pragma unroll 1
    for (int h = 0; h < H; ++h) {
        T d = (T)0;
#pragma unroll
        for (int k = 0; k < NN_CLASSES; ++k) d += W2[k * H + h] * sh.dz2[k][t];
        sh.dz1[h][t] = inside ? nn_relu_backward<T>(d, sh.a1[h][t]) : (T)0;
        if (!inside) sh.a1[h][t] = (T)0;
    }
}

template <typename T, int H, bool A>
__device__ __forceinline__ void nn_tile_accumulate(const nn_tile_shared<T, H>& sh, nn_tile_thread<T, H, A>& st, int n,
                                                   int t) {
    // dW1[h][p] += dZ1[h][s] x[s][p] for this thread's pixels p = 4t .. 4t + 3, over the tile's n samples in order
    if (4 * t < NN_PIXELS) {
        for (int s = 0; s < n; ++s) {
            const unsigned int word = reinterpret_cast<const unsigned int*>(sh.x[s])[t];
            if (word == 0u) continue;
            T x[4];
#pragma unroll
            for (int j = 0; j < 4; ++j) x[j] = nn_byte_value(word, j, T());
#pragma unroll
            for (int h = 0; h < H; ++h) {
                const T d = sh.dz1[h][s];
#pragma unroll
                for (int j = 0; j < 4; ++j) st.dW1[h][j] += d * x[j];
            }
        }
    }
    // entries e = t + i NN_THREADS of db1 = sum dZ1, dW2 = dZ2 A1^T, db2 = sum dZ2
#pragma unroll
    for (int i = 0; i < nn_tile_thread<T, H, A>::smalls; ++i) {
        const int e = t + i * NN_THREADS;
        if (e < H) {
            for (int s = 0; s < n; ++s) st.small[i] += sh.dz1[e][s];
        } else if (e < H + NN_CLASSES * H) {
            const int k = (e - H) / H, h = (e - H) % H;
            for (int s = 0; s < n; ++s) st.small[i] += sh.dz2[k][s] * sh.a1[h][s];
        } else if (e < H + NN_CLASSES * H + NN_CLASSES) {
            const int k = e - H - NN_CLASSES * H;
            for (int s = 0; s < n; ++s) st.small[i] += sh.dz2[k][s];
        }
    }
}

template <typename T, int H, bool A>
__device__ __forceinline__ void nn_tile_write(const nn_tile_shared<T, H>& sh, const nn_tile_thread<T, H, A>& st, T* row,
                                              int t) {
    // The block's row of partial sums: dW1 = (its sums) / 255, db1, dW2, db2, then loss and correct
    if (4 * t < NN_PIXELS) {
#pragma unroll
        for (int h = 0; h < H; ++h) {
#pragma unroll
            for (int j = 0; j < 4; ++j) row[h * NN_PIXELS + 4 * t + j] = st.dW1[h][j] / (T)255;
        }
    }
    const int smalls = H + NN_CLASSES * H + NN_CLASSES;
#pragma unroll
    for (int i = 0; i < nn_tile_thread<T, H, A>::smalls; ++i) {
        if (t + i * NN_THREADS < smalls) row[H * NN_PIXELS + t + i * NN_THREADS] = st.small[i];
    }
    if (t == 0) {
        T loss = (T)0, correct = (T)0;
        for (int s = 0; s < NN_TILE; ++s) loss += sh.lanes[0][s], correct += sh.lanes[1][s];
        row[H * NN_PIXELS + smalls] = loss;
        row[H * NN_PIXELS + smalls + 1] = correct;
    }
}

#ifdef __CUDA_ARCH__
// NN_PHASE(NN_THREADS) { ... }: every thread of the block runs the braces with t = its index, then all
// wait at a barrier; on the host (tests/test_cuda_host.py) the threads run the braces one after another
#define NN_PHASE(threads) for (int t = threadIdx.x, once = 1; once; once = 0, __syncthreads())
#else
#define NN_PHASE(threads) for (int t = (threadIdx.x = 0); t < (threads); threadIdx.x = ++t)
#endif

template <typename S>
__device__ __forceinline__ S& nn_state(S& state, int) { return state; }  // a thread's own state, on the card

template <typename S>
__device__ __forceinline__ S& nn_state(S* states, int t) { return states[t]; }  // thread t's, on the host

template <typename T, int H, bool A, typename States>
__device__ __forceinline__ void nn_tile_partials(nn_tile_shared<T, H>& sh, States states, const unsigned char* X,
                                                 const int* y, const long long* order, long long count,
                                                 const T* params, T* partials) {
    // One block of the partial-sums kernel; states: the thread's own state (a reference), or every thread's
    const T* W1 = params;
    const T* b1 = W1 + H * NN_PIXELS;
    const T* W2 = b1 + H;
    const T* b2 = W2 + NN_CLASSES * H;
    const long long tiles = (count + NN_TILE - 1) / NN_TILE;
    NN_PHASE(NN_THREADS) {
        nn_state(states, t) = {};
        nn_tile_fetch<T, H, A>(nn_state(states, t), X, order, count, blockIdx.x, t);
    }
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const int n = (int)min((long long)NN_TILE, count - tile * NN_TILE);
        NN_PHASE(NN_THREADS) nn_tile_store<T, H, A>(sh, nn_state(states, t), X, order, count, tile, t);
        NN_PHASE(NN_THREADS) {
            nn_tile_fetch<T, H, A>(nn_state(states, t), X, order, count, tile + gridDim.x, t);  // in flight meanwhile
            nn_tile_hidden<T, H>(sh, W1, b1, t);
        }
        NN_PHASE(NN_THREADS) nn_tile_output<T, H, A>(sh, nn_state(states, t), W2, b2, y, order, count, tile, t);
        NN_PHASE(NN_THREADS) nn_tile_accumulate<T, H, A>(sh, nn_state(states, t), n, t);
    }
    NN_PHASE(NN_THREADS) {
        if (t < NN_TILE) sh.lanes[0][t] = nn_state(states, t).loss, sh.lanes[1][t] = nn_state(states, t).correct;
    }
    NN_PHASE(NN_THREADS) nn_tile_write<T, H, A>(sh, nn_state(states, t), partials + (long long)blockIdx.x * n_entries_of<H>(), t);
}

"""
