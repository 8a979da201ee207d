// Dropout-family kernels (docs/contract/ops.md); compiled after the preambles
// (kernels/cuda_launch.py).
// A work item is one Philox block: four consecutive elements of the logical flat index, so every
// element draws its own word whatever the launch configuration.

// A thread's four elements move as one vector access where `vector` (every array of the launch
// is quad-aligned, fr_quad_aligned) and the block is whole; element by element otherwise. Both
// paths compute the same values.

// keep(i) = bits(i) >= threshold for the four elements of `block`, as bytes 0/1.
FR_HD void fr_mask_block(unsigned char *out, fr_u64 n, fr_u64 block, fr_u32 k0, fr_u32 k1,
                         fr_u32 salt, fr_u32 offset, fr_u64 threshold, bool vector) {
    const fr_words w = fr_philox_block(block, salt, offset, k0, k1);
    const fr_u64 base = block << 2;
    if (vector && base + 4 <= n) {
        fr_bytes4 q;
        for (int t = 0; t < 4; ++t) q.v[t] = fr_keep(w.w[t], threshold) ? 1 : 0;
        fr_store_bytes4(out, base, q);
        return;
    }
    for (int t = 0; t < 4; ++t)
        if (base + t < n) out[base + t] = fr_keep(w.w[t], threshold) ? 1 : 0;
}

// out[i] = x[i] * scale if kept else +0.0. x and out may be the same memory (in-place dropout):
// each element is read before it is written by the same thread.
template <typename T>
FR_HD void fr_dropout_block(const T *x, T *out, fr_u64 n, fr_u64 block, fr_u32 k0, fr_u32 k1,
                            fr_u32 salt, fr_u32 offset, fr_u64 threshold,
                            typename fr_compute<T>::type scale, bool vector) {
    const fr_words w = fr_philox_block(block, salt, offset, k0, k1);
    const fr_u64 base = block << 2;
    if (vector && base + 4 <= n) {
        const fr_quad<T> in = fr_load_quad(x, base);
        fr_quad<T> r;
        for (int t = 0; t < 4; ++t)
            fr_store(r.v, t, fr_select_scale(fr_keep(w.w[t], threshold), fr_load(in.v, t), scale));
        fr_store_quad(out, base, r);
        return;
    }
    for (int t = 0; t < 4; ++t)
        if (base + t < n)
            fr_store(out, base + t,
                     fr_select_scale(fr_keep(w.w[t], threshold), fr_load(x, base + t), scale));
}

// fr_dropout_block of x into out and of g in place, under one mask (one Philox block for both):
// the per-batch DropConnect backward masks W and its gradient together. g overlaps neither x nor
// out.
template <typename T>
FR_HD void fr_dropout_pair_block(const T *x, T *out, T *g, fr_u64 n, fr_u64 block, fr_u32 k0,
                                 fr_u32 k1, fr_u32 salt, fr_u32 offset, fr_u64 threshold,
                                 typename fr_compute<T>::type scale, bool vector) {
    const fr_words w = fr_philox_block(block, salt, offset, k0, k1);
    const fr_u64 base = block << 2;
    if (vector && base + 4 <= n) {
        const fr_quad<T> in = fr_load_quad(x, base);
        fr_quad<T> gq = fr_load_quad(g, base), r;
        for (int t = 0; t < 4; ++t) {
            const bool keep = fr_keep(w.w[t], threshold);
            fr_store(r.v, t, fr_select_scale(keep, fr_load(in.v, t), scale));
            fr_store(gq.v, t, fr_select_scale(keep, fr_load(gq.v, t), scale));
        }
        fr_store_quad(out, base, r);
        fr_store_quad(g, base, gq);
        return;
    }
    for (int t = 0; t < 4; ++t) {
        if (base + t < n) {
            const bool keep = fr_keep(w.w[t], threshold);
            fr_store(out, base + t, fr_select_scale(keep, fr_load(x, base + t), scale));
            fr_store(g, base + t, fr_select_scale(keep, fr_load(g, base + t), scale));
        }
    }
}

// the contract's formulas as written (infinities stay infinite), in double (docs/contract/ops.md:
// at least float32
// on the GPU): x + additive * noise if multiplicative == 0, else x * (1 + multiplicative * noise).
FR_HD double fr_gaussian_value(double v, double noise, double additive, double multiplicative) {
    return multiplicative == 0.0 ? v + additive * noise : v * (1.0 + multiplicative * noise);
}

// out[i] = fr_gaussian_value(x[i], n(i)) for the two elements of pair block `block`, cast once.
// A kernel thread handles two pair blocks (fr_gaussian_quad), so its four elements move as one
// vector.
template <typename T>
FR_HD void fr_gaussian_block(const T *x, T *out, fr_u64 n, fr_u64 block, fr_u32 k0, fr_u32 k1,
                             fr_u32 offset, double additive, double multiplicative) {
    const fr_words w = fr_philox_block(block, FR_SALT_GAUSSIAN, offset, k0, k1);
    const fr_u64 base = block << 1;
    for (int h = 0; h < 2; ++h) {
        if (base + h < n) {
            const double v = (double)fr_load(x, base + h);
            const double noise = fr_box_muller(w.w[2 * h], w.w[2 * h + 1]);
            const double y = fr_gaussian_value(v, noise, additive, multiplicative);
            fr_store(out, base + h, (typename fr_compute<T>::type)y);
        }
    }
}

// fr_gaussian_block for the two pair blocks 2*quad and 2*quad + 1: the four elements
// [4*quad, 4*quad + 4), moved as one vector where `vector` and the quad is whole.
template <typename T>
FR_HD void fr_gaussian_quad(const T *x, T *out, fr_u64 n, fr_u64 quad, fr_u32 k0, fr_u32 k1,
                            fr_u32 offset, double additive, double multiplicative, bool vector) {
    const fr_u64 base = quad << 2;
    if (vector && base + 4 <= n) {
        const fr_quad<T> in = fr_load_quad(x, base);
        fr_quad<T> r;
        for (int b = 0; b < 2; ++b) {
            const fr_words w = fr_philox_block(2 * quad + b, FR_SALT_GAUSSIAN, offset, k0, k1);
            for (int h = 0; h < 2; ++h) {
                const int t = 2 * b + h;
                const double v = (double)fr_load(in.v, t);
                const double noise = fr_box_muller(w.w[2 * h], w.w[2 * h + 1]);
                const double y = fr_gaussian_value(v, noise, additive, multiplicative);
                fr_store(r.v, t, (typename fr_compute<T>::type)y);
            }
        }
        fr_store_quad(out, base, r);
        return;
    }
    fr_gaussian_block(x, out, n, 2 * quad, k0, k1, offset, additive, multiplicative);
    fr_gaussian_block(x, out, n, 2 * quad + 1, k0, k1, offset, additive, multiplicative);
}

#ifdef __CUDACC__
extern "C" __global__ void fastreg_dropout_mask_bool(unsigned char *out, fr_u64 n, fr_u32 k0,
                                                     fr_u32 k1, fr_u32 salt, fr_u32 offset,
                                                     fr_u64 threshold) {
    const bool vector = fr_bytes4_aligned(out);
    FR_GRID_STRIDE(b, (n + 3) >> 2)
    fr_mask_block(out, n, b, k0, k1, salt, offset, threshold, vector);
}

#define FR_DROPOUT_KERNELS(SUFFIX, T)                                                          \
    extern "C" __global__ void fastreg_dropout_apply_##SUFFIX(                                 \
        const T *x, T *out, fr_u64 n, fr_u32 k0, fr_u32 k1, fr_u32 salt, fr_u32 offset,        \
        fr_u64 threshold, fr_compute<T>::type scale) {                                         \
        const bool vector = fr_quad_aligned(x) && fr_quad_aligned(out);                        \
        FR_GRID_STRIDE(b, (n + 3) >> 2)                                                        \
        fr_dropout_block(x, out, n, b, k0, k1, salt, offset, threshold, scale, vector);        \
    }                                                                                          \
    extern "C" __global__ void fastreg_dropout_applypair_##SUFFIX(                             \
        const T *x, T *out, T *g, fr_u64 n, fr_u32 k0, fr_u32 k1, fr_u32 salt, fr_u32 offset,  \
        fr_u64 threshold, fr_compute<T>::type scale) {                                         \
        const bool vector = fr_quad_aligned(x) && fr_quad_aligned(out) && fr_quad_aligned(g);  \
        FR_GRID_STRIDE(b, (n + 3) >> 2)                                                        \
        fr_dropout_pair_block(x, out, g, n, b, k0, k1, salt, offset, threshold, scale,         \
                              vector);                                                         \
    }                                                                                          \
    extern "C" __global__ void fastreg_gaussian_apply_##SUFFIX(                                \
        const T *x, T *out, fr_u64 n, fr_u32 k0, fr_u32 k1, fr_u32 offset, double additive,    \
        double multiplicative) {                                                               \
        const bool vector = fr_quad_aligned(x) && fr_quad_aligned(out);                        \
        FR_GRID_STRIDE(q, (n + 3) >> 2)                                                        \
        fr_gaussian_quad(x, out, n, q, k0, k1, offset, additive, multiplicative, vector);      \
    }
FR_FOR_EACH_FLOAT(FR_DROPOUT_KERNELS)
#endif
