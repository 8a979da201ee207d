// DropConnect kernels (docs/contract/ops.md); compiled after the preambles
// (kernels/cuda_launch.py).
//
// Per example, weight (k, n) of example e is kept iff bits(e*K*N + k*N + n) >= threshold (salt 1).
// The three kernels (forward y, dx, dW) are tiled over their output; one CUDA block owns one
// output tile at a time (block-stride over tiles) and walks the reduced dimension in chunks. For
// each chunk the block stages its operands and the keep flags of the (TE x TK x TN) box of
// (example, row, column) it covers in shared memory: for a fixed (e, k) the columns are
// consecutive flat indices, so the box rows are drawn as whole Philox blocks (at most one extra
// block per row at a ragged edge: TN/4 + 1 per row), each generated once. No (B, K, N) array
// exists anywhere; memory beyond inputs and outputs is the shared tile (plus, for dW with few
// tiles, a bounded workspace of partial sums, see fastreg_dropconnect_dw).
//
// Each output element is summed by one thread, over the reduced index in ascending order (per dW
// segment), so results depend neither on the block size nor on the grid. The tile bodies are
// __host__ __device__ and built from fr_block_run phases: the test harness runs the same code on
// the host with emulated threads and blocks.
//
// Per batch needs no kernel here: fastreg.dropconnect masks W with the dropout kernel on the
// salt-1 stream (the same select) and multiplies with cuBLAS.

#define FR_DC_TE 8
#define FR_DC_TK 16
#define FR_DC_TN 64
// Padded shared rows: a warp reading a column of a tile hits 32 different banks.
#define FR_DC_KEEP_ROW 68
#define FR_DC_W_ROW 65

struct fr_stream {
    fr_u32 k0, k1, salt, offset;
    fr_u64 threshold;
};

typedef unsigned char fr_dc_keep_box_t[FR_DC_TE][FR_DC_TK][FR_DC_KEEP_ROW];

// keep[e][k][j] = keep(e_lo + e, k_lo + k, n_lo + j) for e < ne, k < nk, j < nn. One work item per
// Philox block of a box row (TN/4 + 1 slots per row; slots past the row's last block are idle).
FR_HD void fr_dc_keep_box(fr_dc_keep_box_t &keep, fr_u64 e_lo, int ne, fr_u64 k_lo, int nk,
                          fr_u64 n_lo, int nn, fr_u64 K, fr_u64 N, const fr_stream &s, int tid,
                          int threads) {
    const int per_row = FR_DC_TN / 4 + 1;
    for (int item = tid; item < ne * nk * per_row; item += threads) {
        const int q = item % per_row, row = item / per_row;
        const int k = row % nk, e = row / nk;
        const fr_u64 start = ((e_lo + e) * K + k_lo + k) * N + n_lo;
        const fr_u64 block = (start >> 2) + q;
        if ((block << 2) >= start + nn) continue;
        const fr_words w = fr_philox_block(block, s.salt, s.offset, s.k0, s.k1);
        for (int t = 0; t < 4; ++t) {
            const fr_u64 f = (block << 2) + t;
            if (f >= start && f < start + nn)
                keep[e][k][f - start] = fr_keep(w.w[t], s.threshold) ? 1 : 0;
        }
    }
}

// ---------------------------------------------------------------------------- forward
template <typename C>
struct fr_dc_forward_smem {
    fr_dc_keep_box_t keep;
    C w[FR_DC_TK][FR_DC_W_ROW];
    C x[FR_DC_TE][FR_DC_TK];
    C acc[FR_DC_TE][FR_DC_TN];
};

FR_HD fr_u64 fr_dc_forward_tiles(fr_u64 B, fr_u64 N) {
    return fr_cdiv(B, FR_DC_TE) * fr_cdiv(N, FR_DC_TN);
}

// y[e, n] = (sum_k x[e, k] * select(keep(e, k, n), W[k, n], 0)) * scale + b[n], k ascending;
// tiles (example block, column block), walked from `first` in steps of `stride` (the grid).
template <typename T, typename C>
FR_HD void fr_dc_forward(const T *x, const T *W, const T *b, T *y, fr_u64 B, fr_u64 K, fr_u64 N,
                         int has_bias, const fr_stream &s, C scale, fr_dc_forward_smem<C> &sh,
                         fr_u64 first, fr_u64 stride, int threads) {
    const fr_u64 n_tiles = fr_cdiv(N, FR_DC_TN);
    for (fr_u64 tile = first; tile < fr_dc_forward_tiles(B, N); tile += stride) {
        const fr_u64 e_lo = tile / n_tiles * FR_DC_TE, n_lo = tile % n_tiles * FR_DC_TN;
        const int ne = fr_span(B, e_lo, FR_DC_TE), nn = fr_span(N, n_lo, FR_DC_TN);
        for (fr_u64 k_lo = 0; k_lo < K; k_lo += FR_DC_TK) {
            const int nk = fr_span(K, k_lo, FR_DC_TK);
            fr_block_run(threads, [&](int tid, int nt) {
                for (int i = tid; i < nk * nn; i += nt)
                    sh.w[i / nn][i % nn] = fr_load(W, (k_lo + i / nn) * N + n_lo + i % nn);
                for (int i = tid; i < ne * nk; i += nt)
                    sh.x[i / nk][i % nk] = fr_load(x, (e_lo + i / nk) * K + k_lo + i % nk);
                fr_dc_keep_box(sh.keep, e_lo, ne, k_lo, nk, n_lo, nn, K, N, s, tid, nt);
            });
            fr_block_run(threads, [&](int tid, int nt) {
                for (int i = tid; i < ne * nn; i += nt) {
                    const int e = i / nn, j = i % nn;
                    C a = k_lo ? sh.acc[e][j] : (C)0;
                    for (int k = 0; k < nk; ++k)
                        a += sh.x[e][k] * (sh.keep[e][k][j] ? sh.w[k][j] : (C)0);
                    sh.acc[e][j] = a;
                }
            });
        }
        fr_block_run(threads, [&](int tid, int nt) {
            for (int i = tid; i < ne * nn; i += nt) {
                const int e = i / nn, j = i % nn;
                C v = (K ? sh.acc[e][j] : (C)0) * scale;
                if (has_bias) v = v + (C)fr_load(b, n_lo + j);
                fr_store(y, (e_lo + e) * N + n_lo + j, v);
            }
        });
    }
}

// --------------------------------------------------------------------------------- dx
template <typename C>
struct fr_dc_dx_smem {
    fr_dc_keep_box_t keep;
    C w[FR_DC_TK][FR_DC_W_ROW];
    C dy[FR_DC_TE][FR_DC_TN];
    C acc[FR_DC_TE][FR_DC_TK];
};

FR_HD fr_u64 fr_dc_dx_tiles(fr_u64 B, fr_u64 K) {
    return fr_cdiv(B, FR_DC_TE) * fr_cdiv(K, FR_DC_TK);
}

// dx[e, k] = (sum_n select(keep(e, k, n), dy[e, n], 0) * W[k, n]) * scale, n ascending; tiles
// (example block, row block).
template <typename T, typename C>
FR_HD void fr_dc_dx(const T *dy, const T *W, T *dx, fr_u64 B, fr_u64 K, fr_u64 N,
                    const fr_stream &s, C scale, fr_dc_dx_smem<C> &sh, fr_u64 first,
                    fr_u64 stride, int threads) {
    const fr_u64 k_tiles = fr_cdiv(K, FR_DC_TK);
    for (fr_u64 tile = first; tile < fr_dc_dx_tiles(B, K); tile += stride) {
        const fr_u64 e_lo = tile / k_tiles * FR_DC_TE, k_lo = tile % k_tiles * FR_DC_TK;
        const int ne = fr_span(B, e_lo, FR_DC_TE), nk = fr_span(K, k_lo, FR_DC_TK);
        for (fr_u64 n_lo = 0; n_lo < N; n_lo += FR_DC_TN) {
            const int nn = fr_span(N, n_lo, FR_DC_TN);
            fr_block_run(threads, [&](int tid, int nt) {
                for (int i = tid; i < nk * nn; i += nt)
                    sh.w[i / nn][i % nn] = fr_load(W, (k_lo + i / nn) * N + n_lo + i % nn);
                for (int i = tid; i < ne * nn; i += nt)
                    sh.dy[i / nn][i % nn] = fr_load(dy, (e_lo + i / nn) * N + n_lo + i % nn);
                fr_dc_keep_box(sh.keep, e_lo, ne, k_lo, nk, n_lo, nn, K, N, s, tid, nt);
            });
            fr_block_run(threads, [&](int tid, int nt) {
                for (int i = tid; i < ne * nk; i += nt) {
                    const int e = i / nk, k = i % nk;
                    C a = n_lo ? sh.acc[e][k] : (C)0;
                    for (int j = 0; j < nn; ++j)
                        a += (sh.keep[e][k][j] ? sh.dy[e][j] : (C)0) * sh.w[k][j];
                    sh.acc[e][k] = a;
                }
            });
        }
        fr_block_run(threads, [&](int tid, int nt) {
            for (int i = tid; i < ne * nk; i += nt) {
                const int e = i / nk, k = i % nk;
                fr_store(dx, (e_lo + e) * K + k_lo + k, (N ? sh.acc[e][k] : (C)0) * scale);
            }
        });
    }
}

// --------------------------------------------------------------------------------- dW
template <typename C>
struct fr_dc_dw_smem {
    fr_dc_keep_box_t keep;
    C x[FR_DC_TE][FR_DC_TK];
    C dy[FR_DC_TE][FR_DC_TN];
    C acc[FR_DC_TK][FR_DC_TN];
};

FR_HD fr_u64 fr_dc_dw_tiles(fr_u64 K, fr_u64 N) {
    return fr_cdiv(K, FR_DC_TK) * fr_cdiv(N, FR_DC_TN);
}

// Segment `seg` of the batch, examples [seg*seg_len, min(B, (seg+1)*seg_len)), sums
// g[k, n] = sum_e x[e, k] * select(keep(e, k, n), dy[e, n], 0), e ascending. With one segment it
// writes dW = g * scale; otherwise partial[seg][k][n] = g (unscaled, compute type), reduced by
// fr_dc_dw_sum. The segment count comes from the shapes only (never the device), so the summation
// order is a function of (B, K, N). Work items are (segment, row block, column block).
template <typename T, typename C>
FR_HD void fr_dc_dw(const T *dy, const T *x, T *dW, C *partial, fr_u64 B, fr_u64 K, fr_u64 N,
                    fr_u64 segments, fr_u64 seg_len, const fr_stream &s, C scale,
                    fr_dc_dw_smem<C> &sh, fr_u64 first, fr_u64 stride, int threads) {
    const fr_u64 n_tiles = fr_cdiv(N, FR_DC_TN), tiles = fr_dc_dw_tiles(K, N);
    for (fr_u64 item = first; item < segments * tiles; item += stride) {
        const fr_u64 seg = item / tiles, tile = item % tiles;
        const fr_u64 k_lo = tile / n_tiles * FR_DC_TK, n_lo = tile % n_tiles * FR_DC_TN;
        const int nk = fr_span(K, k_lo, FR_DC_TK), nn = fr_span(N, n_lo, FR_DC_TN);
        const fr_u64 e_begin = seg * seg_len;
        const fr_u64 e_end = B < e_begin + seg_len ? B : e_begin + seg_len;
        for (fr_u64 e_lo = e_begin; e_lo < e_end; e_lo += FR_DC_TE) {
            const int ne = fr_span(e_end, e_lo, FR_DC_TE);
            fr_block_run(threads, [&](int tid, int nt) {
                for (int i = tid; i < ne * nk; i += nt)
                    sh.x[i / nk][i % nk] = fr_load(x, (e_lo + i / nk) * K + k_lo + i % nk);
                for (int i = tid; i < ne * nn; i += nt)
                    sh.dy[i / nn][i % nn] = fr_load(dy, (e_lo + i / nn) * N + n_lo + i % nn);
                fr_dc_keep_box(sh.keep, e_lo, ne, k_lo, nk, n_lo, nn, K, N, s, tid, nt);
            });
            fr_block_run(threads, [&](int tid, int nt) {
                for (int i = tid; i < nk * nn; i += nt) {
                    const int k = i / nn, j = i % nn;
                    C a = e_lo != e_begin ? sh.acc[k][j] : (C)0;
                    for (int e = 0; e < ne; ++e)
                        a += sh.x[e][k] * (sh.keep[e][k][j] ? sh.dy[e][j] : (C)0);
                    sh.acc[k][j] = a;
                }
            });
        }
        fr_block_run(threads, [&](int tid, int nt) {
            for (int i = tid; i < nk * nn; i += nt) {
                const int k = i / nn, j = i % nn;
                const C g = e_begin < e_end ? sh.acc[k][j] : (C)0;
                const fr_u64 at = (k_lo + k) * N + n_lo + j;
                if (segments == 1)
                    fr_store(dW, at, g * scale);
                else
                    partial[seg * K * N + at] = g;
            }
        });
    }
}

// dW[i] = (sum over segments, ascending, of partial[seg][i]) * scale.
template <typename T, typename C>
FR_HD void fr_dc_dw_sum(const C *partial, T *dW, fr_u64 i, fr_u64 count, fr_u64 segments,
                        C scale) {
    C a = (C)0;
    for (fr_u64 seg = 0; seg < segments; ++seg) a += partial[seg * count + i];
    fr_store(dW, i, a * scale);
}

// ------------------------------------------------------------------ moment-matching inference
// E[relu(u)], u ~ N(mu, sigma^2): mu * Phi(mu/sigma) + sigma * phi(mu/sigma); relu(mu) if sigma == 0.
// In double, with the constants of the NumPy twin (math.sqrt(0.5), 1/sqrt(2*pi)).
FR_HD double fr_relu_gaussian_mean(double mu, double sigma) {
    if (sigma > 0.0) {
        const double z = mu / sigma;
        return mu * 0.5 * erfc(-z * 0.7071067811865476) +
               sigma * 0.3989422804014327 * exp(-0.5 * z * z);
    }
    return mu > 0.0 ? mu : 0.0;
}

#ifdef __CUDACC__
#define FR_DROPCONNECT_KERNELS(SUFFIX, T)                                                        \
    extern "C" __global__ void fastreg_dropconnect_forward_##SUFFIX(                             \
        const T *x, const T *W, const T *b, T *y, fr_u64 B, fr_u64 K, fr_u64 N, int has_bias,    \
        fr_u32 k0, fr_u32 k1, fr_u32 salt, fr_u32 offset, fr_u64 threshold,                      \
        fr_compute<T>::type scale) {                                                             \
        __shared__ fr_dc_forward_smem<fr_compute<T>::type> sh;                                   \
        const fr_stream s = {k0, k1, salt, offset, threshold};                                   \
        fr_dc_forward(x, W, b, y, B, K, N, has_bias, s, scale, sh, blockIdx.x, gridDim.x, 0);    \
    }                                                                                            \
    extern "C" __global__ void fastreg_dropconnect_dx_##SUFFIX(                                  \
        const T *dy, const T *W, T *dx, fr_u64 B, fr_u64 K, fr_u64 N, fr_u32 k0, fr_u32 k1,      \
        fr_u32 salt, fr_u32 offset, fr_u64 threshold, fr_compute<T>::type scale) {               \
        __shared__ fr_dc_dx_smem<fr_compute<T>::type> sh;                                        \
        const fr_stream s = {k0, k1, salt, offset, threshold};                                   \
        fr_dc_dx(dy, W, dx, B, K, N, s, scale, sh, blockIdx.x, gridDim.x, 0);                    \
    }                                                                                            \
    extern "C" __global__ void fastreg_dropconnect_dw_##SUFFIX(                                  \
        const T *dy, const T *x, T *dW, fr_compute<T>::type *partial, fr_u64 B, fr_u64 K,        \
        fr_u64 N, fr_u64 segments, fr_u64 seg_len, fr_u32 k0, fr_u32 k1, fr_u32 salt,            \
        fr_u32 offset, fr_u64 threshold, fr_compute<T>::type scale) {                            \
        __shared__ fr_dc_dw_smem<fr_compute<T>::type> sh;                                        \
        const fr_stream s = {k0, k1, salt, offset, threshold};                                   \
        fr_dc_dw(dy, x, dW, partial, B, K, N, segments, seg_len, s, scale, sh, blockIdx.x,       \
                 gridDim.x, 0);                                                                  \
    }                                                                                            \
    extern "C" __global__ void fastreg_dropconnect_dwsum_##SUFFIX(                               \
        const fr_compute<T>::type *partial, T *dW, fr_u64 count, fr_u64 segments,                \
        fr_compute<T>::type scale) {                                                             \
        FR_GRID_STRIDE(i, count) fr_dc_dw_sum(partial, dW, i, count, segments, scale);           \
    }                                                                                            \
    extern "C" __global__ void fastreg_dropconnect_relumean_##SUFFIX(const T *mean, const T *std, \
                                                                     T *out, fr_u64 n) {        \
        FR_GRID_STRIDE(i, n)                                                                     \
        fr_store(out, i,                                                                         \
                 (fr_compute<T>::type)fr_relu_gaussian_mean((double)fr_load(mean, i),           \
                                                            (double)fr_load(std, i)));           \
    }
FR_FOR_EACH_FLOAT(FR_DROPCONNECT_KERNELS)
#endif
