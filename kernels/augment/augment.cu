// Augmentation kernels (SPEC 4.5); compiled after the preambles (kernels/cuda_launch.py).
// Nothing random is drawn here: the per-sample tables come from the host (augment/params.py),
// so these kernels move or sample exactly the pixels the CPU twins do. A work item is one
// output element, its flat index over (N, P, H, W, C) (planes P of H x W pixels of C channels).
//   move table, long long (N, 8): vflip, hflip, dy, dx, row0, row1, col0, col1
//   affine table, double (N, 6): A00, A01, b0, A10, A11, b1

typedef unsigned char fr_u8;
typedef unsigned short fr_u16;

struct fr_image {
    long long planes, h, w, ch;
};

struct fr_pixel {
    long long n, p, i, j, c;
};

FR_HD fr_pixel fr_pixel_of(fr_u64 e, fr_image s) {
    fr_pixel q;
    q.c = (long long)(e % (fr_u64)s.ch);
    e /= (fr_u64)s.ch;
    q.j = (long long)(e % (fr_u64)s.w);
    e /= (fr_u64)s.w;
    q.i = (long long)(e % (fr_u64)s.h);
    e /= (fr_u64)s.h;
    q.p = (long long)(e % (fr_u64)s.planes);
    q.n = (long long)(e / (fr_u64)s.planes);
    return q;
}

// Element (row, col, channel c) of plane p of sample n.
FR_HD fr_u64 fr_index(fr_image s, fr_pixel q, long long row, long long col) {
    return (fr_u64)((((q.n * s.planes + q.p) * s.h + row) * s.w + col) * s.ch + q.c);
}

// cutout(translate(flip(x))): fill inside the cutout rectangle, else the flipped source pixel
// of (i - dy, j - dx), or fill where that is outside. Pure data movement (T: the bits).
template <typename T>
FR_HD void fr_move_element(const T *x, T *out, const long long *table, fr_u64 e, fr_image s,
                           T fill) {
    const fr_pixel q = fr_pixel_of(e, s);
    const long long *t = table + 8 * q.n;
    long long si = q.i - t[2], sj = q.j - t[3];
    const bool cut = t[4] <= q.i && q.i < t[5] && t[6] <= q.j && q.j < t[7];
    if (cut || si < 0 || si >= s.h || sj < 0 || sj >= s.w) {
        out[e] = fill;
        return;
    }
    if (t[0]) si = s.h - 1 - si;
    if (t[1]) sj = s.w - 1 - sj;
    out[e] = x[fr_index(s, q, si, sj)];
}

// q = (A00*i + A01*j + b0, A10*i + A11*j + b1) in double, in that order; --fmad=false (and
// -ffp-contract=off on the host) keeps each product and sum rounded like NumPy's.
FR_HD void fr_source_point(const double *a, fr_pixel q, double &qy, double &qx) {
    const double fi = (double)q.i, fj = (double)q.j;
    qy = a[0] * fi + a[1] * fj + a[2];
    qx = a[3] * fi + a[4] * fj + a[5];
}

FR_HD bool fr_inside(double y, double x, fr_image s) {
    return y >= 0.0 && y <= (double)(s.h - 1) && x >= 0.0 && x <= (double)(s.w - 1);
}

// Nearest: the pixel floor(q + 0.5), or fill outside. Data movement again.
template <typename T>
FR_HD void fr_nearest_element(const T *x, T *out, const double *table, fr_u64 e, fr_image s,
                              T fill) {
    const fr_pixel q = fr_pixel_of(e, s);
    double qy, qx;
    fr_source_point(table + 6 * q.n, q, qy, qx);
    const double y = floor(qy + 0.5), xx = floor(qx + 0.5);
    out[e] = fr_inside(y, xx, s) ? x[fr_index(s, q, (long long)y, (long long)xx)] : fill;
}

// Storage types of the bilinear blend: load to the compute type, store from it (rounded once).
#ifdef __CUDACC__
#define FR_STATIC static __host__ __device__ __forceinline__
#else
#define FR_STATIC static inline
#endif
struct fr_aug_u8 {
    typedef fr_u8 storage;
    typedef float compute;
    FR_STATIC float load(const fr_u8 *p, fr_u64 i) { return (float)p[i]; }
    FR_STATIC void store(fr_u8 *p, fr_u64 i, float v) {  // nearest even, clamped
        p[i] = (fr_u8)fminf(fmaxf(rintf(v), 0.0f), 255.0f);
    }
};
struct fr_aug_f16 {
    typedef fr_u16 storage;
    typedef float compute;
    FR_STATIC float load(const fr_u16 *p, fr_u64 i) { return fr_half_to_float(p[i]); }
    FR_STATIC void store(fr_u16 *p, fr_u64 i, float v) { p[i] = fr_float_to_half(v); }
};
struct fr_aug_bf16 {  // bfloat16 as its bits; the dtype preamble's conversions (RNE)
    typedef fr_u16 storage;
    typedef float compute;
    FR_STATIC float load(const fr_u16 *p, fr_u64 i) { return fr_bf16_to_float(p[i]); }
    FR_STATIC void store(fr_u16 *p, fr_u64 i, float v) { p[i] = fr_float_to_bf16(v); }
};
template <typename T>
struct fr_aug_float {
    typedef T storage;
    typedef T compute;
    FR_STATIC T load(const T *p, fr_u64 i) { return p[i]; }
    FR_STATIC void store(T *p, fr_u64 i, T v) { p[i] = v; }
};

// A neighbour of weight 0 is never read and counts as 0; one outside the image counts as fill.
template <class L>
FR_HD typename L::compute fr_neighbour(const typename L::storage *x, fr_image s, fr_pixel q,
                                       double y, double xx, typename L::compute wy,
                                       typename L::compute wx, typename L::compute fill) {
    typedef typename L::compute C;
    if (wy == (C)0 || wx == (C)0) return (C)0;
    if (!fr_inside(y, xx, s)) return fill;
    return L::load(x, fr_index(s, q, (long long)y, (long long)xx));
}

// Bilinear in the compute type C: wy, wx cast once from double, then
// ((1-wy)*((1-wx)*v00 + wx*v01) + wy*((1-wx)*v10 + wx*v11)).
template <class L>
FR_HD void fr_bilinear_element(const typename L::storage *x, typename L::storage *out,
                               const double *table, fr_u64 e, fr_image s,
                               typename L::compute fill) {
    typedef typename L::compute C;
    const fr_pixel q = fr_pixel_of(e, s);
    double qy, qx;
    fr_source_point(table + 6 * q.n, q, qy, qx);
    const double y0 = floor(qy), x0 = floor(qx);
    const C wy1 = (C)(qy - y0), wx1 = (C)(qx - x0);
    const C wy0 = (C)1 - wy1, wx0 = (C)1 - wx1;
    const C v00 = fr_neighbour<L>(x, s, q, y0, x0, wy0, wx0, fill);
    const C v01 = fr_neighbour<L>(x, s, q, y0, x0 + 1.0, wy0, wx1, fill);
    const C v10 = fr_neighbour<L>(x, s, q, y0 + 1.0, x0, wy1, wx0, fill);
    const C v11 = fr_neighbour<L>(x, s, q, y0 + 1.0, x0 + 1.0, wy1, wx1, fill);
    const C top = wx0 * v00 + wx1 * v01;
    const C bottom = wx0 * v10 + wx1 * v11;
    L::store(out, e, wy0 * top + wy1 * bottom);
}

#ifdef __CUDACC__
#define FR_IMAGE_ARGS fr_u64 total, long long planes, long long h, long long w, long long ch
#define FR_IMAGE fr_image{planes, h, w, ch}

#define FR_MOVE_KERNELS(SUFFIX, T)                                                            \
    extern "C" __global__ void fastreg_augment_move_##SUFFIX(                                 \
        const T *x, T *out, const long long *table, FR_IMAGE_ARGS, T fill) {                  \
        FR_GRID_STRIDE(e, total) fr_move_element(x, out, table, e, FR_IMAGE, fill);           \
    }                                                                                         \
    extern "C" __global__ void fastreg_affine_nearest_##SUFFIX(                               \
        const T *x, T *out, const double *table, FR_IMAGE_ARGS, T fill) {                     \
        FR_GRID_STRIDE(e, total) fr_nearest_element(x, out, table, e, FR_IMAGE, fill);        \
    }
FR_MOVE_KERNELS(u8, fr_u8)
FR_MOVE_KERNELS(u16, fr_u16)
FR_MOVE_KERNELS(u32, fr_u32)
FR_MOVE_KERNELS(u64, fr_u64)

// S and C spelled out (L::storage, L::compute) so the signature reads as plain C types.
#define FR_BILINEAR_KERNEL(SUFFIX, L, S, C)                                                   \
    extern "C" __global__ void fastreg_affine_bilinear_##SUFFIX(                              \
        const S *x, S *out, const double *table, FR_IMAGE_ARGS, C fill) {                     \
        FR_GRID_STRIDE(e, total) fr_bilinear_element<L>(x, out, table, e, FR_IMAGE, fill);    \
    }
FR_BILINEAR_KERNEL(u8, fr_aug_u8, fr_u8, float)
FR_BILINEAR_KERNEL(f16, fr_aug_f16, fr_u16, float)
FR_BILINEAR_KERNEL(bf16, fr_aug_bf16, fr_u16, float)
FR_BILINEAR_KERNEL(f32, fr_aug_float<float>, float, float)
FR_BILINEAR_KERNEL(f64, fr_aug_float<double>, double, double)
#endif
