// Raw Philox stream kernels (docs/contract/random-stream.md); compiled after the preambles
// (kernels/cuda_launch.py).

// Philox4x32-rounds of n counters (n, 4) under n keys (n, 2); one counter per work item.
extern "C" __global__ void fastreg_philox_rounds_u32(const fr_u32 *counter, const fr_u32 *key,
                                                     fr_u32 *out, fr_u64 n, int rounds) {
    FR_GRID_STRIDE(j, n) {
        const fr_u32 *c = counter + 4 * j;
        const fr_words w = fr_philox4x32(c[0], c[1], c[2], c[3], key[2 * j], key[2 * j + 1], rounds);
        for (int t = 0; t < 4; ++t) out[4 * j + t] = w.w[t];
    }
}

// bits(i) for i in [start, start + n) into out[i - start]; one Philox block per work item.
FR_HD void fr_bits_block(fr_u32 *out, fr_u64 start, fr_u64 n, fr_u64 block, fr_u32 k0,
                         fr_u32 k1, fr_u32 salt, fr_u32 offset) {
    const fr_words w = fr_philox_block(block, salt, offset, k0, k1);
    for (int t = 0; t < 4; ++t) {
        const fr_u64 i = 4 * block + t;
        if (i >= start && i - start < n) out[i - start] = w.w[t];
    }
}

extern "C" __global__ void fastreg_philox_bits_u32(fr_u32 *out, fr_u64 start, fr_u64 n, fr_u32 k0,
                                                   fr_u32 k1, fr_u32 salt, fr_u32 offset) {
    const fr_u64 first = start >> 2;
    const fr_u64 blocks = ((start + n - 1) >> 2) - first + 1;
    FR_GRID_STRIDE(j, blocks) fr_bits_block(out, start, n, first + j, k0, k1, salt, offset);
}
