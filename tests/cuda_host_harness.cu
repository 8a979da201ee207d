// Host entry points over the shared __host__ __device__ functions of the CUDA kernels, so that
// tests/test_cuda_compile.py can check them against the NumPy stream without a GPU. Compiled after
// the preambles and the family .cu files (the same text CuPy compiles), loaded with ctypes.

extern "C" {

void fr_host_philox(const fr_u32 *counter, const fr_u32 *key, fr_u32 *out, fr_u64 n, int rounds) {
    for (fr_u64 j = 0; j < n; ++j) {
        const fr_words w = fr_philox4x32(counter[4 * j], counter[4 * j + 1], counter[4 * j + 2],
                                         counter[4 * j + 3], key[2 * j], key[2 * j + 1], rounds);
        for (int t = 0; t < 4; ++t) out[4 * j + t] = w.w[t];
    }
}

// bits(i) at arbitrary flat indices (block indices past 2**32 included).
void fr_host_bits_at(const fr_u64 *index, fr_u32 *out, fr_u64 n, fr_u32 salt, fr_u32 offset,
                     fr_u32 k0, fr_u32 k1) {
    for (fr_u64 j = 0; j < n; ++j) out[j] = fr_bits_at(index[j], salt, offset, k0, k1);
}

// The random_bits kernel body, walking its blocks backwards (the order must not matter).
void fr_host_random_bits(fr_u32 *out, fr_u64 start, fr_u64 n, fr_u32 k0, fr_u32 k1, fr_u32 salt,
                         fr_u32 offset) {
    const fr_u64 first = start >> 2;
    const fr_u64 blocks = ((start + n - 1) >> 2) - first + 1;
    for (fr_u64 j = blocks; j-- > 0;) fr_bits_block(out, start, n, first + j, k0, k1, salt, offset);
}

// The float16 conversions of the dtype preamble (their host path: the device uses PTX cvt).
void fr_host_half_to_float(const unsigned short *h, float *out, fr_u64 n) {
    for (fr_u64 j = 0; j < n; ++j) out[j] = fr_half_to_float(h[j]);
}

void fr_host_float_to_half(const float *f, unsigned short *out, fr_u64 n) {
    for (fr_u64 j = 0; j < n; ++j) out[j] = fr_float_to_half(f[j]);
}

// The bfloat16 conversions of the dtype preamble (the same integer code runs on the device).
void fr_host_bf16_to_float(const unsigned short *h, float *out, fr_u64 n) {
    for (fr_u64 j = 0; j < n; ++j) out[j] = fr_bf16_to_float(h[j]);
}

void fr_host_float_to_bf16(const float *f, unsigned short *out, fr_u64 n) {
    for (fr_u64 j = 0; j < n; ++j) out[j] = fr_float_to_bf16(f[j]);
}

void fr_host_keep(const fr_u32 *bits, unsigned char *out, fr_u64 n, fr_u64 threshold) {
    for (fr_u64 j = 0; j < n; ++j) out[j] = fr_keep(bits[j], threshold) ? 1 : 0;
}

void fr_host_mask(unsigned char *out, fr_u64 n, fr_u32 k0, fr_u32 k1, fr_u32 salt, fr_u32 offset,
                  fr_u64 threshold) {
    const bool vector = fr_bytes4_aligned(out);  // as the kernel decides
    for (fr_u64 b = (n + 3) >> 2; b-- > 0;)
        fr_mask_block(out, n, b, k0, k1, salt, offset, threshold, vector);
}

void fr_host_normals_at(const fr_u64 *index, double *out, fr_u64 n, fr_u32 offset, fr_u32 k0,
                        fr_u32 k1) {
    for (fr_u64 j = 0; j < n; ++j) out[j] = fr_normal_at(index[j], offset, k0, k1);
}

#define FR_HOST_DROPOUT(SUFFIX, T)                                                               \
    void fr_host_dropout_##SUFFIX(const T *x, T *out, fr_u64 n, fr_u32 k0, fr_u32 k1,          \
                                  fr_u32 salt, fr_u32 offset, fr_u64 threshold, T scale) {      \
        for (fr_u64 b = (n + 3) >> 2; b-- > 0;)                                                  \
            fr_dropout_block(x, out, n, b, k0, k1, salt, offset, threshold, scale,               \
                             fr_quad_aligned(x) && fr_quad_aligned(out));                        \
    }                                                                                            \
    void fr_host_dropout_pair_##SUFFIX(const T *x, T *out, T *g, fr_u64 n, fr_u32 k0,          \
                                       fr_u32 k1, fr_u32 salt, fr_u32 offset, fr_u64 threshold, \
                                       T scale) {                                               \
        for (fr_u64 b = (n + 3) >> 2; b-- > 0;)                                                  \
            fr_dropout_pair_block(x, out, g, n, b, k0, k1, salt, offset, threshold, scale,       \
                                  fr_quad_aligned(x) && fr_quad_aligned(out) &&                  \
                                      fr_quad_aligned(g));                                       \
    }                                                                                            \
    void fr_host_gaussian_##SUFFIX(const T *x, T *out, fr_u64 n, fr_u32 k0, fr_u32 k1,         \
                                   fr_u32 offset, double additive, double multiplicative) {     \
        const bool vector = fr_quad_aligned(x) && fr_quad_aligned(out);                         \
        for (fr_u64 q = (n + 3) >> 2; q-- > 0;)                                                  \
            fr_gaussian_quad(x, out, n, q, k0, k1, offset, additive, multiplicative, vector);   \
    }
FR_HOST_DROPOUT(f32, float)
FR_HOST_DROPOUT(f64, double)

#define FR_HOST_PROX(SUFFIX, T)                                                                  \
    void fr_host_sgd_##SUFFIX(T *w, const T *grad, T *buf, const unsigned char *mask, fr_u64 n, \
                              T lr, T thr, T shrink, T momentum, int nesterov) {                 \
        const bool vector = fr_quad_aligned(w) && fr_quad_aligned(grad) &&                      \
                            fr_quad_aligned(buf) && fr_bytes4_aligned(mask);                    \
        for (fr_u64 q = 0; q < n; q += 4)                                                        \
            fr_sgd_quad(w, grad, buf, mask, q, n, vector, lr, thr, shrink, momentum,             \
                        nesterov != 0);                                                          \
    }                                                                                            \
    void fr_host_adam_##SUFFIX(T *w, const T *grad, T *m, T *v, const unsigned char *mask,      \
                               fr_u64 n, T beta1, T omb1, T beta2, T omb2, T step_size,          \
                               T inv_sqrt_bc2, T eps, T decay, T lr_l1, T two_lr_l2, int prox) { \
        const bool vector = fr_quad_aligned(w) && fr_quad_aligned(grad) && fr_quad_aligned(m) && \
                            fr_quad_aligned(v) && fr_bytes4_aligned(mask);                      \
        for (fr_u64 q = 0; q < n; q += 4)                                                        \
            fr_adam_quad(w, grad, m, v, mask, q, n, vector, beta1, omb1, beta2, omb2, step_size, \
                         inv_sqrt_bc2, eps, decay, lr_l1, two_lr_l2, prox);                      \
    }
FR_HOST_PROX(f32, float)
FR_HOST_PROX(f64, double)

void fr_host_group_scales(const double *norms, double *lasso, double *bounded, fr_u64 n,
                          double t, double c) {
    for (fr_u64 g = 0; g < n; ++g) {
        lasso[g] = fr_group_lasso_scale(norms[g], t);
        bounded[g] = fr_max_norm_scale(norms[g], c);
    }
}

}  // extern "C"

// ------------------------------------------------------------------------------- DropConnect
// The tiled kernels' own bodies, run on the host: `blocks` emulated CUDA blocks (walked last to
// first) of `threads` emulated threads each, over shared memory that starts as 0xFF bytes (NaN
// floats, "kept" flags), so a read of anything a phase did not write shows in the result.
template <class S>
static S *fr_host_smem() {
    S *sh = new S;
    unsigned char *bytes = (unsigned char *)sh;
    for (unsigned long j = 0; j < sizeof(S); ++j) bytes[j] = 0xFF;
    return sh;
}

extern "C" {

#define FR_HOST_DROPCONNECT(SUFFIX, T)                                                           \
    void fr_host_dc_forward_##SUFFIX(const T *x, const T *W, const T *b, T *y, fr_u64 B,         \
                                     fr_u64 K, fr_u64 N, int has_bias, fr_u32 k0, fr_u32 k1,     \
                                     fr_u32 salt, fr_u32 offset, fr_u64 threshold, T scale,      \
                                     fr_u64 blocks, int threads) {                               \
        fr_dc_forward_smem<T> *sh = fr_host_smem<fr_dc_forward_smem<T> >();                      \
        const fr_stream s = {k0, k1, salt, offset, threshold};                                   \
        for (fr_u64 blk = blocks; blk-- > 0;)                                                    \
            fr_dc_forward(x, W, b, y, B, K, N, has_bias, s, scale, *sh, blk, blocks, threads);   \
        delete sh;                                                                               \
    }                                                                                            \
    void fr_host_dc_backward_##SUFFIX(const T *dy, const T *x, const T *W, T *dx, T *dW,         \
                                      T *partial, fr_u64 B, fr_u64 K, fr_u64 N,                  \
                                      fr_u64 segments, fr_u64 seg_len, fr_u32 k0, fr_u32 k1,     \
                                      fr_u32 salt, fr_u32 offset, fr_u64 threshold, T scale,     \
                                      fr_u64 blocks, int threads) {                              \
        const fr_stream s = {k0, k1, salt, offset, threshold};                                   \
        fr_dc_dx_smem<T> *shx = fr_host_smem<fr_dc_dx_smem<T> >();                               \
        for (fr_u64 blk = blocks; blk-- > 0;)                                                    \
            fr_dc_dx(dy, W, dx, B, K, N, s, scale, *shx, blk, blocks, threads);                  \
        delete shx;                                                                              \
        fr_dc_dw_smem<T> *shw = fr_host_smem<fr_dc_dw_smem<T> >();                               \
        for (fr_u64 blk = blocks; blk-- > 0;)                                                    \
            fr_dc_dw(dy, x, dW, partial, B, K, N, segments, seg_len, s, scale, *shw, blk,        \
                     blocks, threads);                                                           \
        delete shw;                                                                              \
        if (segments > 1)                                                                        \
            for (fr_u64 i = K * N; i-- > 0;) fr_dc_dw_sum(partial, dW, i, K * N, segments, scale); \
    }
FR_HOST_DROPCONNECT(f32, float)
FR_HOST_DROPCONNECT(f64, double)

void fr_host_dc_relu_mean(const double *mean, const double *std, double *out, fr_u64 n) {
    for (fr_u64 i = 0; i < n; ++i) out[i] = fr_relu_gaussian_mean(mean[i], std[i]);
}

}  // extern "C" (dropconnect)

// ------------------------------------------------------------------------------------ dense
extern "C" {

#define FR_HOST_DENSE(SUFFIX, T)                                                                 \
    void fr_host_dense_act_##SUFFIX(const T *v, T *out, fr_u64 n, int code, T scale) {           \
        for (fr_u64 i = 0; i < n; ++i) out[i] = fr_dense_act_scaled(code, v[i], scale);          \
    }                                                                                            \
    void fr_host_dense_grad_##SUFFIX(const T *dy, const T *a, const T *z, T *out, fr_u64 n,      \
                                     int code, T scale) {                                        \
        for (fr_u64 i = 0; i < n; ++i) out[i] = fr_dense_grad(code, dy[i], a[i], z[i], scale);   \
    }                                                                                            \
    void fr_host_dense_forward_##SUFFIX(T *y, T *z, const T *b, fr_u64 n, fr_u64 N,              \
                                        int has_bias, int want_z, int code, fr_u32 k0,           \
                                        fr_u32 k1, fr_u32 salt, fr_u32 offset,                   \
                                        fr_u64 threshold, T scale) {                             \
        for (fr_u64 blk = (n + 3) >> 2; blk-- > 0;)                                              \
            fr_dense_forward_block(y, z, b, n, N, has_bias, want_z, code, blk, k0, k1, salt,     \
                                   offset, threshold, scale);                                    \
    }                                                                                            \
    void fr_host_dense_backward_##SUFFIX(const T *dy, const T *y, const T *z, T *dz,             \
                                         double *partial, T *db, fr_u64 M, fr_u64 N,             \
                                         fr_u64 rows, int code, fr_u32 k0, fr_u32 k1,            \
                                         fr_u32 salt, fr_u32 offset, fr_u64 threshold, T scale,  \
                                         T inverse) {                                            \
        const fr_u64 chunks = (M + rows - 1) / rows;                                             \
        for (fr_u64 item = chunks * ((N + 3) >> 2); item-- > 0;)                                 \
            fr_dense_backward_item(dy, y, z, dz, partial, item, M, N, rows, code, k0, k1, salt,  \
                                   offset, threshold, scale, inverse);                           \
        for (fr_u64 c = N; c-- > 0;) fr_dense_db(partial, db, c, N, chunks);                     \
    }
FR_HOST_DENSE(f32, float)
FR_HOST_DENSE(f64, double)

}  // extern "C" (dense)
