// Dropout-family kernels (SPEC 4.1); compiled after the preambles (kernels/cuda_launch.py).
// A work item is one Philox block: four consecutive elements of the logical flat index, so every
// element draws its own word whatever the launch configuration.

// keep(i) = bits(i) >= threshold for the four elements of `block`, as bytes 0/1.
FR_HD void fr_mask_block(unsigned char *out, fr_u64 n, fr_u64 block, fr_u32 k0, fr_u32 k1,
                         fr_u32 salt, fr_u32 offset, fr_u64 threshold) {
    const fr_words w = fr_philox_block(block, salt, offset, k0, k1);
    const fr_u64 base = block << 2;
    for (int t = 0; t < 4; ++t)
        if (base + t < n) out[base + t] = fr_keep(w.w[t], threshold) ? 1 : 0;
}

// out[i] = x[i] * scale if kept else +0.0. x and out may be the same memory (in-place dropout):
// each element is read before it is written by the same thread.
template <typename T>
FR_HD void fr_dropout_block(const T *x, T *out, fr_u64 n, fr_u64 block, fr_u32 k0, fr_u32 k1,
                            fr_u32 salt, fr_u32 offset, fr_u64 threshold,
                            typename fr_compute<T>::type scale) {
    const fr_words w = fr_philox_block(block, salt, offset, k0, k1);
    const fr_u64 base = block << 2;
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
                                 typename fr_compute<T>::type scale) {
    const fr_words w = fr_philox_block(block, salt, offset, k0, k1);
    const fr_u64 base = block << 2;
    for (int t = 0; t < 4; ++t) {
        if (base + t < n) {
            const bool keep = fr_keep(w.w[t], threshold);
            fr_store(out, base + t, fr_select_scale(keep, fr_load(x, base + t), scale));
            fr_store(g, base + t, fr_select_scale(keep, fr_load(g, base + t), scale));
        }
    }
}

// out[i] = x[i] + additive * n(i) if multiplicative == 0, else x[i] * (1 + multiplicative * n(i)):
// SPEC's formulas as written (infinities stay infinite), for the two elements of pair block
// `block`, in double (SPEC 4.1: at least float32 on the GPU) and cast once.
template <typename T>
FR_HD void fr_gaussian_block(const T *x, T *out, fr_u64 n, fr_u64 block, fr_u32 k0, fr_u32 k1,
                             fr_u32 offset, double additive, double multiplicative) {
    const fr_words w = fr_philox_block(block, FR_SALT_GAUSSIAN, offset, k0, k1);
    const fr_u64 base = block << 1;
    for (int h = 0; h < 2; ++h) {
        if (base + h < n) {
            const double v = (double)fr_load(x, base + h);
            const double noise = fr_box_muller(w.w[2 * h], w.w[2 * h + 1]);
            const double y = multiplicative == 0.0 ? v + additive * noise
                                                   : v * (1.0 + multiplicative * noise);
            fr_store(out, base + h, (typename fr_compute<T>::type)y);
        }
    }
}

#ifdef __CUDACC__
extern "C" __global__ void fastreg_dropout_mask_bool(unsigned char *out, fr_u64 n, fr_u32 k0,
                                                     fr_u32 k1, fr_u32 salt, fr_u32 offset,
                                                     fr_u64 threshold) {
    FR_GRID_STRIDE(b, (n + 3) >> 2) fr_mask_block(out, n, b, k0, k1, salt, offset, threshold);
}

#define FR_DROPOUT_KERNELS(SUFFIX, T)                                                          \
    extern "C" __global__ void fastreg_dropout_apply_##SUFFIX(                                 \
        const T *x, T *out, fr_u64 n, fr_u32 k0, fr_u32 k1, fr_u32 salt, fr_u32 offset,        \
        fr_u64 threshold, fr_compute<T>::type scale) {                                         \
        FR_GRID_STRIDE(b, (n + 3) >> 2)                                                        \
        fr_dropout_block(x, out, n, b, k0, k1, salt, offset, threshold, scale);                \
    }                                                                                          \
    extern "C" __global__ void fastreg_dropout_applypair_##SUFFIX(                             \
        const T *x, T *out, T *g, fr_u64 n, fr_u32 k0, fr_u32 k1, fr_u32 salt, fr_u32 offset,  \
        fr_u64 threshold, fr_compute<T>::type scale) {                                         \
        FR_GRID_STRIDE(b, (n + 3) >> 2)                                                        \
        fr_dropout_pair_block(x, out, g, n, b, k0, k1, salt, offset, threshold, scale);        \
    }                                                                                          \
    extern "C" __global__ void fastreg_gaussian_apply_##SUFFIX(                                \
        const T *x, T *out, fr_u64 n, fr_u32 k0, fr_u32 k1, fr_u32 offset, double additive,    \
        double multiplicative) {                                                               \
        FR_GRID_STRIDE(b, (n + 1) >> 1)                                                        \
        fr_gaussian_block(x, out, n, b, k0, k1, offset, additive, multiplicative);             \
    }
FR_FOR_EACH_FLOAT(FR_DROPOUT_KERNELS)
#endif
