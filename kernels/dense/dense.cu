// Fused dense + activation + dropout epilogues (docs/contract/ops.md); compiled after the preambles
// (kernels/cuda_launch.py). The GEMMs are cuBLAS (cupy.matmul); these kernels are the passes
// around them. Element (r, c) of the (M, N) output has the flat index i = r*N + c in the salt-0
// stream (the mask of dropout_mask(y.shape)).
//
// Activation codes follow kernels/dense/__init__.py ACTIVATIONS:
// 0 identity, 1 relu, 2 tanh, 3 sigmoid, 4 gelu (erf form).

#define FR_DENSE_IDENTITY 0
#define FR_DENSE_RELU 1
#define FR_DENSE_TANH 2
#define FR_DENSE_SIGMOID 3
#define FR_DENSE_GELU 4

FR_HD float fr_tanh(float v) { return tanhf(v); }
FR_HD double fr_tanh(double v) { return tanh(v); }
FR_HD float fr_exp(float v) { return expf(v); }
FR_HD double fr_exp(double v) { return exp(v); }

// gelu(z) = z * Phi(z) and its slope Phi(z) + z * phi(z), in double (as the CPU twins), with the
// doubles of math.sqrt(0.5) and 1/math.sqrt(2*pi).
FR_HD double fr_gelu(double z) { return 0.5 * z * (1.0 + erf(z * 0.7071067811865476)); }
FR_HD double fr_gelu_slope(double z) {
    return 0.5 * (1.0 + erf(z * 0.7071067811865476)) + z * exp(-0.5 * z * z) * 0.3989422804014327;
}

// act(v) * scale, in the compute type (gelu through double, rounded once). relu keeps NaN.
template <typename C>
FR_HD C fr_dense_act_scaled(int code, C v, C scale) {
    switch (code) {
        case FR_DENSE_IDENTITY: return v * scale;
        case FR_DENSE_RELU: return (v <= (C)0 ? (C)0 : v) * scale;
        case FR_DENSE_TANH: return fr_tanh(v) * scale;
        case FR_DENSE_SIGMOID: return (C)1 / ((C)1 + fr_exp(-v)) * scale;
        default: return (C)(fr_gelu((double)v) * (double)scale);
    }
}

// dy * scale * act'(z), act' recovered from a = act(z) (identity, relu, tanh, sigmoid) or, for
// gelu, from z (through double, rounded once).
template <typename C>
FR_HD C fr_dense_grad(int code, C dy, C a, C z, C scale) {
    const C g = dy * scale;
    switch (code) {
        case FR_DENSE_IDENTITY: return g;
        case FR_DENSE_RELU: return g * (a > (C)0 ? (C)1 : (C)0);
        case FR_DENSE_TANH: return g * ((C)1 - a * a);
        case FR_DENSE_SIGMOID: return g * (a * ((C)1 - a));
        default: return (C)((double)g * fr_gelu_slope((double)z));
    }
}

// Forward epilogue over Philox block `block` (four consecutive flat indices of the n-element
// output), in place on y = x @ W: v = y + b[c]; z = v (if wanted); y = select(keep, act(v)*scale,
// +0.0). threshold == 0 (p == 0, or training=False) keeps everything without drawing bits.
template <typename T>
FR_HD void fr_dense_forward_block(T *y, T *z, const T *b, fr_u64 n, fr_u64 N, int has_bias,
                                  int want_z, int code, fr_u64 block, fr_u32 k0, fr_u32 k1,
                                  fr_u32 salt, fr_u32 offset, fr_u64 threshold,
                                  typename fr_compute<T>::type scale) {
    typedef typename fr_compute<T>::type C;
    const fr_u64 base = block << 2;
    fr_words w = {{0u, 0u, 0u, 0u}};
    if (threshold) w = fr_philox_block(block, salt, offset, k0, k1);
    fr_u64 c = base % N;
    for (int t = 0; t < 4 && base + t < n; ++t) {
        const fr_u64 i = base + t;
        C v = fr_load(y, i);
        if (has_bias) v = v + (C)fr_load(b, c);
        if (want_z) fr_store(z, i, v);
        fr_store(y, i, fr_keep(w.w[t], threshold) ? fr_dense_act_scaled(code, v, scale) : (C)0);
        if (++c == N) c = 0;
    }
}

// bits(start + t) for t = 0..3: the Philox block of `start`, and the next one when `start` is
// not a multiple of 4, shifted by constant indices (a dynamic index would put them in local
// memory).
FR_HD fr_words fr_dense_words_from(fr_u64 start, fr_u32 salt, fr_u32 offset, fr_u32 k0,
                                   fr_u32 k1) {
    const fr_words lo = fr_philox_block(start >> 2, salt, offset, k0, k1);
    const int lead = (int)(start & 3);
    if (!lead) return lo;
    const fr_words hi = fr_philox_block((start >> 2) + 1, salt, offset, k0, k1);
    fr_words out;
    if (lead == 1) {
        out.w[0] = lo.w[1]; out.w[1] = lo.w[2]; out.w[2] = lo.w[3]; out.w[3] = hi.w[0];
    } else if (lead == 2) {
        out.w[0] = lo.w[2]; out.w[1] = lo.w[3]; out.w[2] = hi.w[0]; out.w[3] = hi.w[1];
    } else {
        out.w[0] = lo.w[3]; out.w[1] = hi.w[0]; out.w[2] = hi.w[1]; out.w[3] = hi.w[2];
    }
    return out;
}

// Backward work item `item`: rows [r0, r1) of row chunk item / quads (`rows` rows each) and the
// four columns [c0, c0 + 4) (clipped at N) of quad item % quads; quads vary fastest, so a warp
// reads consecutive columns of the same rows (coalesced). It writes
// dz = select(keep, fr_dense_grad(dy, y * inverse, z), +0.0) and the column sums of dz over its
// rows (float64, rows ascending) to partial[chunk][c0..]: one fused pass reads dy, y (and z for
// gelu) once, and the bias gradient needs no second read of dz. A row's four columns span at
// most two Philox blocks (the second is drawn, for the last quad, even where nc < 4).
template <typename T>
FR_HD void fr_dense_backward_item(const T *dy, const T *y, const T *z, T *dz, double *partial,
                                  fr_u64 item, fr_u64 M, fr_u64 N, fr_u64 rows, int code,
                                  fr_u32 k0, fr_u32 k1, fr_u32 salt, fr_u32 offset,
                                  fr_u64 threshold, typename fr_compute<T>::type scale,
                                  typename fr_compute<T>::type inverse) {
    typedef typename fr_compute<T>::type C;
    const fr_u64 quads = (N + 3) >> 2;
    const fr_u64 chunk = item / quads, c0 = (item % quads) << 2, r0 = chunk * rows;
    const fr_u64 r1 = M < r0 + rows ? M : r0 + rows;
    const int nc = N - c0 < 4 ? (int)(N - c0) : 4;
    double sums[4] = {0.0, 0.0, 0.0, 0.0};
    for (fr_u64 r = r0; r < r1; ++r) {
        const fr_u64 start = r * N + c0;
        const fr_words bits = threshold ? fr_dense_words_from(start, salt, offset, k0, k1)
                                        : fr_words{{0u, 0u, 0u, 0u}};
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
        for (int t = 0; t < 4; ++t) {
            if (t >= nc) break;
            const fr_u64 i = start + t;
            const C a = (C)fr_load(y, i) * inverse;
            const C zi = code == FR_DENSE_GELU ? (C)fr_load(z, i) : (C)0;
            const C g = fr_keep(bits.w[t], threshold)
                            ? fr_dense_grad(code, (C)fr_load(dy, i), a, zi, scale)
                            : (C)0;
            fr_store(dz, i, g);
            sums[t] += (double)fr_load(dz, i);  // the stored value (float16: rounded)
        }
    }
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
    for (int t = 0; t < 4; ++t)
        if (t < nc) partial[chunk * N + c0 + t] = sums[t];
}

// db[c] = sum over row chunks, ascending, of partial[chunk][c], rounded once.
template <typename T>
FR_HD void fr_dense_db(const double *partial, T *db, fr_u64 c, fr_u64 N, fr_u64 chunks) {
    double s = 0.0;
    for (fr_u64 k = 0; k < chunks; ++k) s += partial[k * N + c];
    fr_store(db, c, (typename fr_compute<T>::type)s);
}

#ifdef __CUDACC__
#define FR_DENSE_KERNELS(SUFFIX, T)                                                              \
    extern "C" __global__ void fastreg_dense_forward_##SUFFIX(                                   \
        T *y, T *z, const T *b, fr_u64 n, fr_u64 N, int has_bias, int want_z, int code,          \
        fr_u32 k0, fr_u32 k1, fr_u32 salt, fr_u32 offset, fr_u64 threshold,                      \
        fr_compute<T>::type scale) {                                                             \
        FR_GRID_STRIDE(blk, (n + 3) >> 2)                                                        \
        fr_dense_forward_block(y, z, b, n, N, has_bias, want_z, code, blk, k0, k1, salt, offset, \
                               threshold, scale);                                                \
    }                                                                                            \
    extern "C" __global__ void fastreg_dense_backward_##SUFFIX(                                  \
        const T *dy, const T *y, const T *z, T *dz, double *partial, fr_u64 M, fr_u64 N,         \
        fr_u64 rows, int code, fr_u32 k0, fr_u32 k1, fr_u32 salt, fr_u32 offset,                 \
        fr_u64 threshold, fr_compute<T>::type scale, fr_compute<T>::type inverse) {              \
        FR_GRID_STRIDE(item, (M + rows - 1) / rows * ((N + 3) >> 2))                            \
        fr_dense_backward_item(dy, y, z, dz, partial, item, M, N, rows, code, k0, k1, salt,      \
                               offset, threshold, scale, inverse);                               \
    }                                                                                            \
    extern "C" __global__ void fastreg_dense_db_##SUFFIX(const double *partial, T *db, fr_u64 N, \
                                                         fr_u64 chunks) {                        \
        FR_GRID_STRIDE(c, N) fr_dense_db(partial, db, c, N, chunks);                             \
    }
FR_FOR_EACH_FLOAT(FR_DENSE_KERNELS)
#endif
