// Proximal-update kernels (docs/contract/ops.md); compiled after the preambles
// (kernels/cuda_launch.py).
// Elementwise updates are multi-tensor: one launch walks a table of tensors cut into chunks
// (a CUDA block per chunk), so a list of arrays costs one launch. Arithmetic is in the compute
// type without FMA contraction, in NumPy's operation order: float32/float64 results equal the
// NumPy twin's bit for bit (float16 computes in float32 and rounds once).

template <typename C>
FR_HD C fr_soft_threshold(C v, C t) {
    const C magnitude = v < (C)0 ? -v : v;  // NaN falls through to v + t: NaN stays NaN
    return magnitude <= t ? (C)0 : (v > (C)0 ? v - t : v + t);
}

// `x` as a load returns it once stored in a T (rounded once for 16-bit storage).
template <typename T, typename C>
FR_HD C fr_as_stored(C x) {
    T stored;
    fr_store(&stored, 0, x);
    return fr_load(&stored, 0);
}

// buf = momentum*buf + grad; d = buf (grad + momentum*buf if nesterov; grad without buf);
// w = S(w - lr*d, thr) * shrink; w = +0.0 where the mask drops.
template <typename T, typename C>
FR_HD void fr_sgd_element(T *w, const T *grad, T *buf, const unsigned char *mask, fr_u64 i, C lr,
                          C thr, C shrink, C momentum, bool nesterov) {
    // Every value is read before any write; the state is written before w (every twin's
    // order: arguments that are the same array agree).
    const C g = fr_load(grad, i);
    const C wi = fr_load(w, i);
    C d = g;
    if (buf) {
        const C b = momentum * fr_load(buf, i) + g;
        fr_store(buf, i, b);
        const C stored = fr_as_stored<T>(b);  // 16-bit state rounds before use
        d = nesterov ? g + momentum * stored : stored;
    }
    C r = fr_soft_threshold(wi - lr * d, thr) * shrink;
    if (mask && !mask[i]) r = (C)0;
    fr_store(w, i, r);
}

// m = beta1*m + (1-beta1)*g; v = beta2*v + (1-beta2)*g*g; r = 1 / (sqrt(v)*inv_sqrt_bc2 + eps);
// z = w*decay - step_size*m*r; prox 1: z = S(z, lr_l1*r) / (1 + two_lr_l2*r); prox 2
// (decoupled): z = S(z, lr_l1) / (1 + two_lr_l2).
template <typename T, typename C>
FR_HD void fr_adam_element(T *w, const T *grad, T *m, T *v, const unsigned char *mask, fr_u64 i,
                           C beta1, C omb1, C beta2, C omb2, C step_size, C inv_sqrt_bc2, C eps,
                           C decay, C lr_l1, C two_lr_l2, int prox) {
    // Every value is read before any write; m, v, then w are stored (see fr_sgd_element).
    const C g = fr_load(grad, i);
    const C wi = fr_load(w, i);
    const C m_new = beta1 * fr_load(m, i) + omb1 * g;
    const C v_new = beta2 * fr_load(v, i) + omb2 * g * g;
    fr_store(m, i, m_new);
    fr_store(v, i, v_new);
    // 16-bit state rounds before use, as NumPy's does
    const C mi = fr_as_stored<T>(m_new);
    const C r = (C)1 / (sqrt(fr_as_stored<T>(v_new)) * inv_sqrt_bc2 + eps);
    C z = wi * decay - step_size * mi * r;
    if (prox) {  // 1: the prox in the Adam metric; 2: decoupled (outside it)
        const C t = prox == 1 ? r : (C)1;
        z = fr_soft_threshold(z, lr_l1 * t) / ((C)1 + two_lr_l2 * t);
    }
    if (mask && !mask[i]) z = (C)0;
    fr_store(w, i, z);
}

// Four consecutive elements [q, q + 4) of one tensor, clipped at hi; a thread's quad moves as one
// vector access per array where `vector` (all of the tensor's arrays quad-aligned) and the quad is
// whole, element by element otherwise. The element functions run on the loaded registers then,
// so both paths compute the same values.
template <typename T, typename C>
FR_HD void fr_sgd_quad(T *w, const T *grad, T *buf, const unsigned char *mask, fr_u64 q, fr_u64 hi,
                       bool vector, C lr, C thr, C shrink, C momentum, bool nesterov) {
    if (vector && q + 4 <= hi) {
        fr_quad<T> wq = fr_load_quad(w, q), bq;
        const fr_quad<T> gq = fr_load_quad(grad, q);
        fr_bytes4 mq;
        if (buf) bq = fr_load_quad(buf, q);
        if (mask) mq = fr_load_bytes4(mask, q);
        for (int t = 0; t < 4; ++t)
            fr_sgd_element(wq.v, gq.v, buf ? bq.v : (T *)0, mask ? mq.v : (unsigned char *)0, t,
                           lr, thr, shrink, momentum, nesterov);
        if (buf) fr_store_quad(buf, q, bq);  // the state before w, as element by element
        fr_store_quad(w, q, wq);
        return;
    }
    for (fr_u64 i = q; i < q + 4 && i < hi; ++i)
        fr_sgd_element(w, grad, buf, mask, i, lr, thr, shrink, momentum, nesterov);
}

template <typename T, typename C>
FR_HD void fr_adam_quad(T *w, const T *grad, T *m, T *v, const unsigned char *mask, fr_u64 q,
                        fr_u64 hi, bool vector, C beta1, C omb1, C beta2, C omb2, C step_size,
                        C inv_sqrt_bc2, C eps, C decay, C lr_l1, C two_lr_l2, int prox) {
    if (vector && q + 4 <= hi) {
        fr_quad<T> wq = fr_load_quad(w, q), mq = fr_load_quad(m, q), vq = fr_load_quad(v, q);
        const fr_quad<T> gq = fr_load_quad(grad, q);
        fr_bytes4 kq;
        if (mask) kq = fr_load_bytes4(mask, q);
        for (int t = 0; t < 4; ++t)
            fr_adam_element(wq.v, gq.v, mq.v, vq.v, mask ? kq.v : (unsigned char *)0, t, beta1,
                            omb1, beta2, omb2, step_size, inv_sqrt_bc2, eps, decay, lr_l1,
                            two_lr_l2, prox);
        fr_store_quad(m, q, mq);  // the states before w, as element by element
        fr_store_quad(v, q, vq);
        fr_store_quad(w, q, wq);
        return;
    }
    for (fr_u64 i = q; i < q + 4 && i < hi; ++i)
        fr_adam_element(w, grad, m, v, mask, i, beta1, omb1, beta2, omb2, step_size, inv_sqrt_bc2,
                        eps, decay, lr_l1, two_lr_l2, prox);
}

// Group scales from the group's L2 norm (computed in double): zero groups stay zero, no NaN.
FR_HD double fr_group_lasso_scale(double norm, double t) {
    return norm <= t ? 0.0 : 1.0 - t / norm;
}
FR_HD double fr_max_norm_scale(double norm, double c) { return norm > c ? c / norm : 1.0; }

#ifdef __CUDACC__
// Sum over the threads of a block (any blockDim up to 1024); every thread gets the total.
__device__ __forceinline__ double fr_block_sum(double value, double *shared) {
    shared[threadIdx.x] = value;
    __syncthreads();
    unsigned width = 1;
    while (width < blockDim.x) width <<= 1;
    for (unsigned s = width >> 1; s > 0; s >>= 1) {
        if (threadIdx.x < s && threadIdx.x + s < blockDim.x) shared[threadIdx.x] += shared[threadIdx.x + s];
        __syncthreads();
    }
    const double total = shared[0];
    __syncthreads();
    return total;
}

// Maximum over the threads of a block, like fr_block_sum.
__device__ __forceinline__ double fr_block_max(double value, double *shared) {
    shared[threadIdx.x] = value;
    __syncthreads();
    unsigned width = 1;
    while (width < blockDim.x) width <<= 1;
    for (unsigned s = width >> 1; s > 0; s >>= 1) {
        if (threadIdx.x < s && threadIdx.x + s < blockDim.x)
            shared[threadIdx.x] = fmax(shared[threadIdx.x], shared[threadIdx.x + s]);
        __syncthreads();
    }
    const double total = shared[0];
    __syncthreads();
    return total;
}

// The L2 norm of a group from its sum of squares; a sum that overflowed or may have underflowed
// (below 2^-900, NORM_RESCALE_BELOW in kernels/prox/__init__.py) is recomputed with the entries
// scaled by 2^-k, k the exponent of the largest magnitude (exact scaling, as the CPU twins do).
template <typename T>
__device__ double fr_group_norm(const T *row, fr_u64 size, long long s1, double sum_squares,
                                double *shared) {
    if (!(isinf(sum_squares) || sum_squares < 1.1830521861667747e-271)) return sqrt(sum_squares);  // 2^-900
    double largest = 0.0;
    for (fr_u64 j = threadIdx.x; j < size; j += blockDim.x)
        largest = fmax(largest, fabs((double)fr_load(row + (long long)j * s1, 0)));
    largest = fr_block_max(largest, shared);
    if (largest == 0.0 || isinf(largest)) return largest;
    int k;
    frexp(largest, &k);
    double acc = 0.0;
    for (fr_u64 j = threadIdx.x; j < size; j += blockDim.x) {
        const double e = ldexp((double)fr_load(row + (long long)j * s1, 0), -k);
        acc += e * e;
    }
    return ldexp(sqrt(fr_block_sum(acc, shared)), k);
}

// The tensor table: one row of FR_SGD_FIELDS (w, grad, buf, mask, size) or FR_ADAM_FIELDS
// (w, grad, m, v, mask, size) u64 per tensor, pointers as integers (0 = absent), the element
// count last; chunks: (tensor row, first element) pairs, one CUDA block per chunk.
#define FR_SGD_FIELDS 5
#define FR_ADAM_FIELDS 6
// Chunk c of the table: the tensor's row and the element range [lo, hi) this CUDA block updates.
__device__ __forceinline__ const fr_u64 *fr_chunk(const fr_u64 *tensors, const fr_u64 *chunks,
                                                  fr_u64 c, int fields, fr_u64 chunk, fr_u64 &lo,
                                                  fr_u64 &hi) {
    const fr_u64 *row = tensors + fields * chunks[2 * c];
    const fr_u64 size = row[fields - 1];
    lo = chunks[2 * c + 1];
    hi = lo + chunk < size ? lo + chunk : size;
    return row;
}

// Groups are rows of a 2-D view with element strides (s0, s1), any sign.
template <typename T>
__device__ void fr_group_scale(T *x, fr_u64 groups, fr_u64 size, long long s0, long long s1,
                               double param, bool lasso) {
    __shared__ double shared[1024];
    typedef typename fr_compute<T>::type C;
    for (fr_u64 g = blockIdx.x; g < groups; g += gridDim.x) {
        T *row = x + (long long)g * s0;
        double acc = 0.0;
        for (fr_u64 j = threadIdx.x; j < size; j += blockDim.x) {
            const double e = (double)fr_load(row + (long long)j * s1, 0);
            acc += e * e;
        }
        const double norm = fr_group_norm(row, size, s1, fr_block_sum(acc, shared), shared);
        const double scale = lasso ? fr_group_lasso_scale(norm, param) : fr_max_norm_scale(norm, param);
        const C s = (C)scale;
        for (fr_u64 j = threadIdx.x; j < size; j += blockDim.x) {
            T *e = row + (long long)j * s1;
            fr_store(e, 0, scale == 0.0 ? (C)0 : fr_load(e, 0) * s);
        }
    }
}

#define FR_PROX_KERNELS(SUFFIX, T)                                                              \
    extern "C" __global__ void fastreg_prox_sgd_##SUFFIX(                                       \
        const fr_u64 *tensors, const fr_u64 *chunks, fr_u64 nchunks, fr_u64 chunk,              \
        fr_compute<T>::type lr, fr_compute<T>::type thr, fr_compute<T>::type shrink,            \
        fr_compute<T>::type momentum, int nesterov) {                                           \
        for (fr_u64 c = blockIdx.x; c < nchunks; c += gridDim.x) {                              \
            fr_u64 lo, hi;                                                                      \
            const fr_u64 *row = fr_chunk(tensors, chunks, c, FR_SGD_FIELDS, chunk, lo, hi);     \
            T *w = (T *)row[0], *buf = (T *)row[2];                                             \
            const T *grad = (const T *)row[1];                                                  \
            const unsigned char *mask = (const unsigned char *)row[3];                          \
            const bool vector = fr_quad_aligned(w) && fr_quad_aligned(grad) &&                  \
                                fr_quad_aligned(buf) && fr_bytes4_aligned(mask);                \
            for (fr_u64 q = lo + 4 * threadIdx.x; q < hi; q += 4 * blockDim.x)                  \
                fr_sgd_quad(w, grad, buf, mask, q, hi, vector, lr, thr, shrink, momentum,       \
                            nesterov != 0);                                                     \
        }                                                                                       \
    }                                                                                           \
    extern "C" __global__ void fastreg_prox_adam_##SUFFIX(                                      \
        const fr_u64 *tensors, const fr_u64 *chunks, fr_u64 nchunks, fr_u64 chunk,              \
        fr_compute<T>::type beta1, fr_compute<T>::type omb1, fr_compute<T>::type beta2,         \
        fr_compute<T>::type omb2, fr_compute<T>::type step_size,                                \
        fr_compute<T>::type inv_sqrt_bc2, fr_compute<T>::type eps, fr_compute<T>::type decay,   \
        fr_compute<T>::type lr_l1, fr_compute<T>::type two_lr_l2, int prox) {                   \
        for (fr_u64 c = blockIdx.x; c < nchunks; c += gridDim.x) {                              \
            fr_u64 lo, hi;                                                                      \
            const fr_u64 *row = fr_chunk(tensors, chunks, c, FR_ADAM_FIELDS, chunk, lo, hi);    \
            T *w = (T *)row[0], *m = (T *)row[2], *v = (T *)row[3];                             \
            const T *grad = (const T *)row[1];                                                  \
            const unsigned char *mask = (const unsigned char *)row[4];                          \
            const bool vector = fr_quad_aligned(w) && fr_quad_aligned(grad) &&                  \
                                fr_quad_aligned(m) && fr_quad_aligned(v) &&                     \
                                fr_bytes4_aligned(mask);                                        \
            for (fr_u64 q = lo + 4 * threadIdx.x; q < hi; q += 4 * blockDim.x)                  \
                fr_adam_quad(w, grad, m, v, mask, q, hi, vector, beta1, omb1, beta2, omb2,      \
                             step_size, inv_sqrt_bc2, eps, decay, lr_l1, two_lr_l2, prox);      \
        }                                                                                       \
    }                                                                                           \
    extern "C" __global__ void fastreg_prox_group_##SUFFIX(T *x, fr_u64 groups, fr_u64 size,    \
                                                           long long s0, long long s1,          \
                                                           double param, int lasso) {           \
        fr_group_scale(x, groups, size, s0, s1, param, lasso != 0);                             \
    }
FR_FOR_EACH_FLOAT(FR_PROX_KERNELS)
#endif
