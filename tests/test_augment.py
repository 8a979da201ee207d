"""Batch image augmentation (docs/contract/ops.md) on every CPU backend, against oracles written
here from the formulas of docs/contract/ops.md and the raw salt-3 stream
(``fastreg.random_bits``), never against the kernels' own tables: np.flip for flips, np.pad +
crop for translations, a slice for cutout, and a per-pixel float64 loop (and scipy.ndimage when
installed) for affine warps."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

import fastreg

ALL_DTYPES = [np.uint8, np.float16, ml_dtypes.bfloat16, np.float32, np.float64]
DTYPE_IDS = ["u8", "f16", "bf16", "f32", "f64"]
SEED, OFFSET = 0x1234_5678_9ABC_DEF0, 7


@pytest.fixture(params=ALL_DTYPES, ids=DTYPE_IDS)
def image_dtype(request):
    return np.dtype(request.param)


def _images(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype) == np.uint8:
        return rng.integers(0, 256, shape).astype(np.uint8)
    return rng.standard_normal(shape).astype(dtype)


def words(ids, seed=SEED, offset=OFFSET):
    """``a_k(n) = bits(8*s + k)`` straight from the salt-3 stream, ``(N, 8)``."""
    ids = np.asarray(ids, dtype=np.int64)
    bits = fastreg.random_bits(8 * (int(ids.max()) + 1), seed=seed, offset=offset, salt=3,
                               backend="numpy")
    return bits.reshape(-1, 8)[ids]


def u(ids, **kw):
    return (words(ids, **kw).astype(np.float64) + 0.5) * 2.0**-32


def same_bits(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


# ------------------------------------------------------------------------------ flips
@pytest.mark.parametrize(("horizontal", "vertical"), [(True, False), (False, True), (True, True)])
def test_flip_equals_np_flip_of_the_chosen_samples(backend, image_dtype, horizontal, vertical):
    x = _images((33, 5, 7, 3), image_dtype)
    y = fastreg.random_flip(x, horizontal=horizontal, vertical=vertical, seed=SEED,
                            offset=OFFSET, backend=backend)
    a = words(np.arange(33))
    for n in range(33):
        expected = x[n]
        if horizontal and a[n, 0] >= 2**31:
            expected = np.flip(expected, axis=1)
        if vertical and a[n, 1] >= 2**31:
            expected = np.flip(expected, axis=0)
        same_bits(y[n], np.ascontiguousarray(expected))
    flipped = a[:, 0] >= 2**31
    assert 5 < flipped.sum() < 28  # both kinds of samples were checked


@pytest.mark.parametrize("channels", [1, 2, 3, 4, 5])
def test_mirrored_pixels_keep_their_channel_order(backend, channels):
    # the CPU twin has one mirrored-row copy per literal channel count (3, 4) and a general one
    x = _images((24, 4, 11, channels), np.float32)
    y = fastreg.random_flip(x, seed=SEED, offset=OFFSET, backend=backend)
    a = words(np.arange(24))
    for n in range(24):
        expected = np.flip(x[n], axis=1) if a[n, 0] >= 2**31 else x[n]
        same_bits(y[n], np.ascontiguousarray(expected))


# -------------------------------------------------------------------------- translate
@pytest.mark.parametrize("max_shift", [0, 1, 4, (2, 5), (0, 3), 12])
def test_translate_equals_pad_then_crop(backend, image_dtype, max_shift):
    x = _images((40, 6, 9, 2), image_dtype)
    fill = 3
    y = fastreg.random_translate(x, max_shift, seed=SEED, offset=OFFSET, fill=fill,
                                 backend=backend)
    my, mx = (max_shift, max_shift) if isinstance(max_shift, int) else max_shift
    uu = u(np.arange(40))
    padded = np.pad(x, ((0, 0), (my, my), (mx, mx), (0, 0)),
                    constant_values=np.array(fill, x.dtype))
    for n in range(40):
        dy = math.floor(uu[n, 2] * (2 * my + 1)) - my
        dx = math.floor(uu[n, 3] * (2 * mx + 1)) - mx
        assert -my <= dy <= my and -mx <= dx <= mx
        crop = padded[n, my - dy : my - dy + 6, mx - dx : mx - dx + 9]
        same_bits(y[n], np.ascontiguousarray(crop))


def test_translate_is_cifar_pad_and_crop_for_channels_first(backend):
    x = _images((16, 3, 32, 32), np.float32)
    y = fastreg.random_translate(x, 4, seed=1, data_format="channels_first", backend=backend)
    uu = u(np.arange(16), seed=1, offset=0)
    padded = np.pad(x, ((0, 0), (0, 0), (4, 4), (4, 4)))
    for n in range(16):
        dy, dx = (math.floor(uu[n, k] * 9) - 4 for k in (2, 3))
        np.testing.assert_array_equal(y[n], padded[n, :, 4 - dy : 36 - dy, 4 - dx : 36 - dx])


# ----------------------------------------------------------------------------- cutout
@pytest.mark.parametrize("size", [1, 3, (2, 5), (40, 1), 100])
def test_cutout_equals_a_slice(backend, image_dtype, size):
    x = _images((30, 7, 8, 3), image_dtype)
    y = fastreg.random_cutout(x, size, seed=SEED, offset=OFFSET, fill=9, backend=backend)
    sh, sw = (size, size) if isinstance(size, int) else size
    uu = u(np.arange(30))
    for n in range(30):
        cy, cx = math.floor(uu[n, 4] * 7), math.floor(uu[n, 5] * 8)
        expected = x[n].copy()
        expected[max(cy - sh // 2, 0) : max(cy - sh // 2 + sh, 0),
                 max(cx - sw // 2, 0) : max(cx - sw // 2 + sw, 0)] = 9
        same_bits(y[n], expected)


@pytest.mark.parametrize(("max_shift", "size"), [((2**62 - 1, 1), 0), ((2, 2**62), 0),
                                                  ((3**40, 10**30), 0), (0, (10**30, 2)),
                                                  (0, (3, 2**63 + 7)), (1, 10**30)])
def test_huge_shifts_and_sizes_follow_the_formula(backend, max_shift, size):
    # Python-int oracle of the formulas: dy = floor(u_2 * float(2*my + 1)) - my (a shift past
    # the image leaves only fill), rows [cy - sh//2, cy - sh//2 + sh) clipped (a size past the
    # image covers it); never an OverflowError from int64 tables.
    x = _images((12, 5, 6), np.float32)
    y = fastreg.augment(x, max_shift=max_shift, cutout=size, seed=SEED, offset=OFFSET, fill=9.0,
                        backend=backend)
    my, mx = (max_shift, max_shift) if isinstance(max_shift, int) else max_shift
    sh, sw = (size, size) if isinstance(size, int) else size
    uu = u(np.arange(12))
    for n in range(12):
        dy = math.floor(uu[n, 2] * float(2 * my + 1)) - my
        dx = math.floor(uu[n, 3] * float(2 * mx + 1)) - mx
        expected = np.full((5, 6), 9.0, np.float32)
        for i in range(5):
            for j in range(6):
                if 0 <= i - dy < 5 and 0 <= j - dx < 6:
                    expected[i, j] = x[n, i - dy, j - dx]
        if sh and sw:
            cy, cx = math.floor(uu[n, 4] * 5), math.floor(uu[n, 5] * 6)
            expected[max(cy - sh // 2, 0) : max(cy - sh // 2 + sh, 0),
                     max(cx - sw // 2, 0) : max(cx - sw // 2 + sw, 0)] = 9.0
        same_bits(y[n], expected)
    moved = fastreg.random_translate(x, max_shift, seed=SEED, offset=OFFSET, fill=9.0,
                                     backend=backend)
    if size:
        moved = fastreg.random_cutout(moved, size, seed=SEED, offset=OFFSET, fill=9.0,
                                      backend=backend)
    same_bits(moved, y)


# ----------------------------------------------------------------------------- augment
@pytest.mark.parametrize(
    "options",
    [
        dict(horizontal_flip=True, max_shift=4, cutout=8),
        dict(horizontal_flip=True, vertical_flip=True, max_shift=(1, 3), cutout=(2, 5)),
        dict(vertical_flip=True),
        dict(max_shift=2),
        dict(cutout=3),
        dict(),
        dict(horizontal_flip=True, max_shift=40, cutout=(1, 50)),
    ],
)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_augment_is_the_composition_bit_for_bit(backend, image_dtype, options, data_format):
    x = _images((21, 3, 10, 12), image_dtype)
    kw = dict(seed=SEED, offset=OFFSET, fill=2, data_format=data_format, backend=backend)
    y = fastreg.augment(x, **options, **kw)
    z = fastreg.random_flip(x, horizontal=options.get("horizontal_flip", False),
                            vertical=options.get("vertical_flip", False), **kw)
    z = fastreg.random_translate(z, options.get("max_shift", 0), **kw)
    if options.get("cutout", 0):
        z = fastreg.random_cutout(z, options["cutout"], **kw)
    same_bits(y, z)
    # and the numpy twin (the oracle) agrees with every backend
    same_bits(y, fastreg.augment(x, **options, **{**kw, "backend": "numpy"}))


def test_fill_nan_and_payloads_move_exactly(backend):
    x = _images((9, 5, 6), np.float32)
    x.view(np.uint32)[0, 0, :3] = [0x7FC0_0001, 0xFFC1_2345, 0x7F80_0000]  # NaNs, inf
    y = fastreg.augment(x, horizontal_flip=True, max_shift=1, cutout=2, fill=float("nan"),
                        seed=3, backend=backend)
    same_bits(y, fastreg.augment(x, horizontal_flip=True, max_shift=1, cutout=2,
                                 fill=float("nan"), seed=3, backend="numpy"))
    assert np.isnan(y).any()


# -------------------------------------------------------------------- sample ids, layout
def test_sample_ids_make_samples_independent_of_position_and_batch(backend):
    x = _images((6, 8, 8, 3), np.float32)
    ids = np.array([17, 3, 2**61 - 1, 0, 5, 1000], dtype=np.uint64)
    kw = dict(horizontal_flip=True, max_shift=2, cutout=3, seed=SEED, offset=OFFSET,
              backend=backend)
    y = fastreg.augment(x, sample_ids=ids, **kw)
    order = np.array([4, 0, 5, 2, 1, 3])
    shuffled = fastreg.augment(x[order], sample_ids=ids[order].astype(np.int64), **kw)
    np.testing.assert_array_equal(shuffled, y[order])
    for n in range(6):
        alone = fastreg.augment(x[n : n + 1], sample_ids=ids[n : n + 1], **kw)
        np.testing.assert_array_equal(alone[0], y[n])
    default = fastreg.augment(x, **kw)
    np.testing.assert_array_equal(default, fastreg.augment(x, sample_ids=np.arange(6), **kw))
    a = fastreg.random_affine(x, rotation=20, zoom=0.2, shift=0.1, seed=1, sample_ids=ids,
                              backend=backend)
    b = fastreg.random_affine(x[2:3], rotation=20, zoom=0.2, shift=0.1, seed=1,
                              sample_ids=ids[2:3], backend=backend)
    np.testing.assert_array_equal(a[2], b[0])


def test_offset_and_seed_change_the_transforms(backend):
    x = _images((64, 8, 8), np.float32)
    base = fastreg.augment(x, horizontal_flip=True, max_shift=2, seed=1, backend=backend)
    for kw in (dict(seed=2), dict(seed=1, offset=1)):
        other = fastreg.augment(x, horizontal_flip=True, max_shift=2, backend=backend, **kw)
        assert not np.array_equal(base, other)


@pytest.mark.parametrize("op", ["augment", "affine_bilinear", "affine_nearest"])
def test_channels_first_equals_channels_last(backend, op):
    x = _images((5, 9, 11, 3), np.float32)
    kw = dict(seed=4, offset=1, backend=backend, fill=0.5)
    if op == "augment":
        def run(a, fmt):
            return fastreg.augment(a, horizontal_flip=True, vertical_flip=True, max_shift=3,
                                   cutout=4, data_format=fmt, **kw)
    else:
        interpolation = op.split("_")[1]

        def run(a, fmt):
            return fastreg.random_affine(a, rotation=30, zoom=0.3, shift=0.2,
                                         interpolation=interpolation, data_format=fmt, **kw)
    last = run(x, "channels_last")
    first = run(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), "channels_first")
    np.testing.assert_array_equal(first.transpose(0, 2, 3, 1), last)
    # a rank-3 batch is (N, H, W) whatever data_format: each channel alone
    for fmt in ("channels_last", "channels_first"):
        np.testing.assert_array_equal(run(np.ascontiguousarray(x[..., 1]), fmt), last[..., 1])


def test_strided_input_and_out(backend):
    x = _images((6, 10, 12, 3), np.float32)
    view = np.asfortranarray(x)[:, ::1, ::1]
    expected = fastreg.augment(x, horizontal_flip=True, max_shift=2, cutout=3, seed=2,
                               backend="numpy")
    np.testing.assert_array_equal(
        fastreg.augment(view, horizontal_flip=True, max_shift=2, cutout=3, seed=2,
                        backend=backend), expected)
    big = np.zeros((6, 10, 24, 3), np.float32)
    out = big[:, :, ::2]
    result = fastreg.augment(x, horizontal_flip=True, max_shift=2, cutout=3, seed=2, out=out,
                             backend=backend)
    assert result is out
    np.testing.assert_array_equal(out, expected)
    out2 = np.empty_like(x)
    assert fastreg.random_affine(x, rotation=5, seed=2, out=out2, backend=backend) is out2


def test_results_do_not_depend_on_thread_count(backend):
    x = _images((64, 32, 32, 3), np.float32)
    runs = []
    for threads in (1, 2):
        with fastreg.num_threads(threads):
            runs.append((fastreg.augment(x, horizontal_flip=True, max_shift=4, cutout=8,
                                         seed=3, backend=backend),
                         fastreg.random_affine(x, rotation=15, zoom=0.1, shift=0.1, seed=3,
                                               backend=backend)))
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_empty_batches(backend):
    for shape in [(0, 4, 4, 3), (3, 0, 4), (2, 4, 0, 1)]:
        x = np.zeros(shape, np.float32)
        assert fastreg.augment(x, max_shift=1, cutout=1, seed=0, backend=backend).shape == shape
        assert fastreg.random_affine(x, rotation=3, seed=0, backend=backend).shape == shape


# -------------------------------------------------------------------------- affine
def affine_oracle(x, ids, rotation, zoom, shift, fill, interpolation, seed=SEED,
                  offset=OFFSET):
    """A per-pixel float64 loop written from docs/contract/ops.md (channels_last or rank 3)."""
    x4 = x if x.ndim == 4 else x[..., None]
    n_, h, w, ch = x4.shape
    uu = u(ids, seed=seed, offset=offset)
    values = x4.astype(np.float64)
    out = np.empty(x4.shape, np.float64)
    for n in range(n_):
        t = rotation * (2 * uu[n, 6] - 1)
        z = 1 + zoom * (2 * uu[n, 7] - 1)
        ty, tx = shift * h * (2 * uu[n, 2] - 1), shift * w * (2 * uu[n, 3] - 1)
        a = math.radians(-t)
        m = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) / z
        c = np.array([(h - 1) / 2, (w - 1) / 2])
        b = c - m @ (c + np.array([ty, tx]))

        def pixel(r, col, n=n):
            inside = 0 <= r < h and 0 <= col < w
            return values[n, int(r), int(col)] if inside else np.full(ch, float(fill))

        for i in range(h):
            for j in range(w):
                qy = m[0, 0] * i + m[0, 1] * j + b[0]
                qx = m[1, 0] * i + m[1, 1] * j + b[1]
                if interpolation == "nearest":
                    out[n, i, j] = pixel(math.floor(qy + 0.5), math.floor(qx + 0.5))
                    continue
                y0, x0 = math.floor(qy), math.floor(qx)
                wy, wx = qy - y0, qx - x0
                total = np.zeros(ch)
                for dy, fy in ((0, 1 - wy), (1, wy)):
                    for dx, fx in ((0, 1 - wx), (1, wx)):
                        if fy * fx:
                            total += fy * fx * pixel(y0 + dy, x0 + dx)
                out[n, i, j] = total
    return out.reshape(x.shape)


@pytest.mark.parametrize("shape", [(12, 9, 11, 3), (7, 16, 5)])
@pytest.mark.parametrize(("rotation", "zoom", "shift"), [(30.0, 0.3, 0.2), (180.0, 0.0, 0.0),
                                                          (0.0, 0.5, 0.0), (-45.0, 0.1, 0.5)])
def test_bilinear_matches_the_float64_formula(backend, shape, rotation, zoom, shift):
    x = _images(shape, np.float64)
    y = fastreg.random_affine(x, rotation=rotation, zoom=zoom, shift=shift, fill=0.25,
                              seed=SEED, offset=OFFSET, backend=backend)
    expected = affine_oracle(x, np.arange(shape[0]), rotation, zoom, shift, 0.25, "bilinear")
    # float64 blend of |x| <~ 5: the sample points agree to ~1e-14 px, the blends to ~1e-14
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-11)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16, np.uint8],
                         ids=["f32", "f16", "bf16", "u8"])
def test_bilinear_low_precision_within_the_blend_bound(backend, dtype):
    x = _images((10, 8, 9, 2), dtype)
    y = fastreg.random_affine(x, rotation=25, zoom=0.2, shift=0.15, fill=1, seed=SEED,
                              offset=OFFSET, backend=backend)
    assert y.dtype == np.dtype(dtype)
    expected = affine_oracle(x, np.arange(10), 25, 0.2, 0.15, 1, "bilinear")
    scale = np.abs(x.astype(np.float64)).max() + 1
    if np.dtype(dtype) == np.uint8:
        # float32 blend then rint: off by at most one level, and only near a .5 tie
        assert np.abs(y.astype(np.float64) - expected).max() <= 0.5 + 1e-3
        far_from_ties = np.abs(expected - np.floor(expected) - 0.5) > 1e-3
        np.testing.assert_array_equal(y[far_from_ties], np.rint(expected[far_from_ties]))
    else:
        # float32 weights and blend (~6 roundings of 2**-24), then one rounding to the storage
        eps = {np.dtype(np.float32): 2.0**-24, np.dtype(np.float16): 2.0**-11,
               np.dtype(ml_dtypes.bfloat16): 2.0**-8}[np.dtype(dtype)]
        bound = (eps + 8 * 2.0**-24) * scale
        np.testing.assert_allclose(y.astype(np.float64), expected, rtol=0, atol=bound)
    same_bits(y, fastreg.random_affine(x, rotation=25, zoom=0.2, shift=0.15, fill=1,
                                       seed=SEED, offset=OFFSET, backend="numpy"))


def test_bilinear_matches_scipy_map_coordinates(backend):
    ndimage = pytest.importorskip("scipy.ndimage")
    x = _images((6, 13, 10), np.float64)
    y = fastreg.random_affine(x, rotation=40, zoom=0.25, shift=0.1, fill=0.0, seed=2,
                              backend=backend)
    uu = u(np.arange(6), seed=2, offset=0)
    for n in range(6):
        t, z = 40 * (2 * uu[n, 6] - 1), 1 + 0.25 * (2 * uu[n, 7] - 1)
        ty, tx = 0.1 * 13 * (2 * uu[n, 2] - 1), 0.1 * 10 * (2 * uu[n, 3] - 1)
        a = math.radians(-t)
        m = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) / z
        c = np.array([6.0, 4.5])
        b = c - m @ (c + [ty, tx])
        ii, jj = np.meshgrid(np.arange(13), np.arange(10), indexing="ij")
        q = np.einsum("ab,bij->aij", m, np.stack([ii, jj])) + b[:, None, None]
        # scipy's constant mode blends with cval outside, like the contract's fill
        expected = ndimage.map_coordinates(x[n], q, order=1, mode="constant", cval=0.0)
        inner = (q[0] > 0) & (q[0] < 12) & (q[1] > 0) & (q[1] < 9)
        np.testing.assert_allclose(y[n][inner], expected[inner], rtol=0, atol=1e-10)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=DTYPE_IDS)
def test_nearest_matches_the_formula_exactly(backend, dtype):
    x = _images((9, 7, 10, 3), dtype)
    y = fastreg.random_affine(x, rotation=35, zoom=0.3, shift=0.2, fill=2,
                              interpolation="nearest", seed=SEED, offset=OFFSET,
                              backend=backend)
    expected = affine_oracle(x, np.arange(9), 35, 0.3, 0.2, 2, "nearest")
    np.testing.assert_array_equal(y.astype(np.float64), expected)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_zero_parameters_are_the_identity(backend, dtype, interpolation):
    x = _images((5, 6, 7, 3), dtype)
    y = fastreg.random_affine(x, interpolation=interpolation, fill=1, seed=9, backend=backend)
    assert y is not x
    same_bits(y, np.ascontiguousarray(x))
    # and a NaN fill is never blended into an exactly sampled edge pixel
    if np.dtype(dtype).kind == "f" or dtype is ml_dtypes.bfloat16:
        z = fastreg.random_affine(x, fill=float("nan"), seed=9, backend=backend)
        same_bits(z, x)


def test_affine_shift_uses_the_translate_words(backend):
    x = _images((20, 9, 9), np.float64)
    # zoom 0, rotation 0: q = (i - ty, j - tx)
    y = fastreg.random_affine(x, shift=0.3, interpolation="nearest", seed=5, backend=backend)
    uu = u(np.arange(20), seed=5, offset=0)
    for n in range(20):
        ty, tx = 0.3 * 9 * (2 * uu[n, 2] - 1), 0.3 * 9 * (2 * uu[n, 3] - 1)
        ii = np.floor(np.arange(9) - ty + 0.5).astype(int)
        jj = np.floor(np.arange(9) - tx + 0.5).astype(int)
        for i in range(9):
            for j in range(9):
                inside = 0 <= ii[i] < 9 and 0 <= jj[j] < 9
                assert y[n, i, j] == (x[n, ii[i], jj[j]] if inside else 0.0)


def test_uint8_bilinear_rounds_ties_to_even_and_clamps(backend):
    # a half-pixel shift blends two levels equally: (1 + 2)/2 = 1.5 -> 2, (2 + 3)/2 -> 2
    x = np.zeros((1, 1, 4), np.uint8)
    x[0, 0] = [1, 2, 3, 255]
    from fastreg._kernels.augment import params

    table = np.array([[1.0, 0.0, 0.0, 0.0, 1.0, 0.5]])  # q = (i, j + 0.5)
    twin = fastreg._backends.twin("augment", backend)
    out = np.empty((1, 1, 1, 4, 1), np.uint8)
    twin.affine(x.reshape(1, 1, 1, 4, 1), out, table, np.uint8(255), False)
    # 1.5 -> 2, 2.5 -> 2, 129.0 -> 129, and 255 blended with the 255 fill stays 255
    np.testing.assert_array_equal(out.reshape(-1), [2, 2, 129, 255])
    assert params.compute_dtype(np.dtype(np.uint8)) == np.float32


# ------------------------------------------------------------------------ not training
@pytest.mark.parametrize("op", ["flip", "translate", "cutout", "augment", "affine"])
def test_not_training_returns_x_itself_after_validating(backend, op):
    x = _images((4, 5, 5, 3), np.float32)
    calls = {
        "flip": lambda **k: fastreg.random_flip(x, **k),
        "translate": lambda **k: fastreg.random_translate(x, 2, **k),
        "cutout": lambda **k: fastreg.random_cutout(x, 2, **k),
        "augment": lambda **k: fastreg.augment(x, max_shift=1, **k),
        "affine": lambda **k: fastreg.random_affine(x, rotation=3, **k),
    }
    call = calls[op]
    assert call(seed=1, training=False, backend=backend) is x
    out = np.zeros_like(x)
    assert call(seed=1, training=False, out=out, backend=backend) is out
    np.testing.assert_array_equal(out, x)
    with pytest.raises(ValueError, match="seed"):
        call(seed=-1, training=False, backend=backend)
    with pytest.raises(ValueError, match="sample_ids"):
        call(seed=1, training=False, sample_ids=np.arange(3), backend=backend)
    with pytest.raises(ValueError, match="data_format"):
        call(seed=1, training=False, data_format="NHWC", backend=backend)


# --------------------------------------------------------------------------- bad input
X = np.zeros((4, 6, 6, 3), np.float32)


def _bad_cases():
    f, t, c, a, af = (fastreg.random_flip, fastreg.random_translate, fastreg.random_cutout,
                      fastreg.augment, fastreg.random_affine)
    return [
        (lambda **k: f(X[0, 0], seed=0, **k), ValueError, "rank 3"),
        (lambda **k: f(X[None], seed=0, **k), ValueError, "rank 3"),
        (lambda **k: f(X, seed=0, data_format="NHWC", **k), ValueError, "data_format"),
        (lambda **k: f(X, seed=0, data_format=None, **k), TypeError, "data_format"),
        (lambda **k: f(X.astype(np.int32), seed=0, **k), TypeError, "x must have dtype"),
        (lambda **k: f(X.astype(bool), seed=0, **k), TypeError, "x must have dtype"),
        (lambda **k: f(X.tolist(), seed=0, **k), TypeError, "x must be a NumPy"),
        (lambda **k: f(X, horizontal=1, seed=0, **k), TypeError, "horizontal"),
        (lambda **k: f(X, seed=None, **k), TypeError, "seed"),
        (lambda **k: f(X, seed=2**64, **k), ValueError, "seed"),
        (lambda **k: f(X, seed=0, offset=2**32, **k), ValueError, "offset"),
        (lambda **k: f(X, seed=0, training="yes", **k), TypeError, "training"),
        (lambda **k: t(X, -1, seed=0, **k), ValueError, "max_shift"),
        (lambda **k: t(X, (1, -2), seed=0, **k), ValueError, "max_shift"),
        (lambda **k: t(X, 2.0, seed=0, **k), TypeError, "max_shift"),
        (lambda **k: t(X, (1, 2, 3), seed=0, **k), ValueError, "max_shift"),
        (lambda **k: t(X, True, seed=0, **k), TypeError, "max_shift"),
        (lambda **k: t(X, 10**400, seed=0, **k), ValueError, "max_shift"),
        (lambda **k: a(X, max_shift=(1, 10**400), seed=0, **k), ValueError, "max_shift"),
        (lambda **k: c(X, 0, seed=0, **k), ValueError, "size"),
        (lambda **k: c(X, (3, 0), seed=0, **k), ValueError, "size"),
        (lambda **k: c(X, 2.0, seed=0, **k), TypeError, "size"),
        (lambda **k: a(X, cutout=-1, seed=0, **k), ValueError, "cutout"),
        (lambda **k: a(X, cutout=1.5, seed=0, **k), TypeError, "cutout"),
        (lambda **k: a(X, max_shift=2.0, seed=0, **k), TypeError, "max_shift"),
        (lambda **k: a(X, vertical_flip=None, seed=0, **k), TypeError, "vertical_flip"),
        (lambda **k: af(X, zoom=1.0, seed=0, **k), ValueError, "zoom"),
        (lambda **k: af(X, zoom=-0.1, seed=0, **k), ValueError, "zoom"),
        (lambda **k: af(X, zoom=float("nan"), seed=0, **k), ValueError, "zoom"),
        (lambda **k: af(X, rotation=float("inf"), seed=0, **k), ValueError, "rotation"),
        (lambda **k: af(X, rotation="15", seed=0, **k), TypeError, "rotation"),
        (lambda **k: af(X, shift=-0.1, seed=0, **k), ValueError, "shift"),
        (lambda **k: af(X, shift=float("inf"), seed=0, **k), ValueError, "shift"),
        (lambda **k: af(X, shift=1e308, seed=0, **k), ValueError, "shift"),
        (lambda **k: af(X, interpolation="cubic", seed=0, **k), ValueError, "interpolation"),
        (lambda **k: f(X, seed=0, sample_ids=np.arange(3), **k), ValueError, "sample_ids"),
        (lambda **k: f(X, seed=0, sample_ids=np.arange(8).reshape(4, 2), **k), ValueError,
         "sample_ids"),
        (lambda **k: f(X, seed=0, sample_ids=np.zeros(4, bool), **k), TypeError, "sample_ids"),
        (lambda **k: f(X, seed=0, sample_ids=np.zeros(4), **k), TypeError, "sample_ids"),
        (lambda **k: f(X, seed=0, sample_ids=[0, 1, 2, 3], **k), TypeError, "sample_ids"),
        (lambda **k: f(X, seed=0, sample_ids=np.array([0, 1, 2, -1]), **k), ValueError,
         "sample_ids"),
        (lambda **k: f(X, seed=0, sample_ids=np.array([0, 1, 2, 2**61], np.uint64), **k),
         ValueError, "sample_ids"),
        (lambda **k: f(X.astype(np.uint8), seed=0, fill=1.5, **k), ValueError, "fill"),
        (lambda **k: f(X.astype(np.uint8), seed=0, fill=256, **k), ValueError, "fill"),
        (lambda **k: f(X.astype(np.uint8), seed=0, fill=-1, **k), ValueError, "fill"),
        (lambda **k: f(X.astype(np.uint8), seed=0, fill=float("nan"), **k), ValueError,
         "fill"),
        (lambda **k: f(X, seed=0, fill="0", **k), TypeError, "fill"),
        (lambda **k: f(X, seed=0, fill=10**400, **k), ValueError, "fill"),
        (lambda **k: f(X, seed=0, backend="tpu", **k), ValueError, "backend"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_cases())))
def test_bad_input_names_the_argument_and_modifies_nothing(backend, case):
    call, error, text = _bad_cases()[case]
    # every check runs before the first write: a valid out= is left as it was
    out = np.full_like(X, 5.0)
    kw = {"out": out} if text == "backend" else {"out": out, "backend": backend}
    with pytest.raises(error, match=text):
        call(**kw)
    assert (out == 5.0).all()
    assert (X == 0).all()


@pytest.mark.parametrize("op", ["flip", "translate", "cutout", "augment", "affine"])
def test_non_array_x_is_pointed_the_way(backend, op):
    # errors.md: a NumPy scalar is pointed to numpy.asarray, a PyTorch tensor to fastreg.torch
    call = {"flip": lambda x: fastreg.random_flip(x, seed=0, backend=backend),
            "translate": lambda x: fastreg.random_translate(x, 1, seed=0, backend=backend),
            "cutout": lambda x: fastreg.random_cutout(x, 1, seed=0, backend=backend),
            "augment": lambda x: fastreg.augment(x, seed=0, backend=backend),
            "affine": lambda x: fastreg.random_affine(x, seed=0, backend=backend)}[op]
    with pytest.raises(TypeError, match=r"x must be a NumPy or CuPy array.*numpy\.asarray"):
        call(np.float32(1.0))
    with pytest.raises(TypeError, match=r"x must be a NumPy or CuPy array.*numpy\.asarray"):
        call([[[0.0]]])
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"x must be a NumPy or CuPy array.*fastreg\.torch"):
        call(torch.zeros(2, 3, 3))


def test_bad_out(backend):
    x = _images((3, 4, 4), np.float32)
    with pytest.raises(ValueError, match="out must not overlap x"):
        fastreg.augment(x, max_shift=1, seed=0, out=x, backend=backend)
    with pytest.raises(ValueError, match="out must not overlap x"):
        fastreg.random_affine(x[:, ::-1], rotation=5, seed=0, out=x, backend=backend)
    with pytest.raises(TypeError, match="out must have dtype"):
        fastreg.augment(x, seed=0, out=np.empty(x.shape), backend=backend)
    with pytest.raises(ValueError, match="out must have shape"):
        fastreg.augment(x, seed=0, out=np.empty((3, 4, 5), np.float32), backend=backend)
    readonly = np.zeros_like(x)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="out must be a writeable"):
        fastreg.augment(x, seed=0, out=readonly, backend=backend)
    with pytest.raises(TypeError, match="out must be"):
        fastreg.augment(x, seed=0, out=[0], backend=backend)


def test_out_may_share_a_buffer_with_x_without_overlapping(backend):
    # ops.md: out must not overlap x; two channels of one interleaved buffer do not overlap.
    buf = _images((10, 5, 6, 2), np.float32)
    x, out = buf[..., 0], buf[..., 1]
    source = x.copy()
    y = fastreg.random_translate(x, 2, seed=SEED, offset=OFFSET, fill=4.0, out=out,
                                 backend=backend)
    assert y is out
    uu = u(np.arange(10))
    padded = np.pad(source, ((0, 0), (2, 2), (2, 2)), constant_values=np.float32(4.0))
    for n in range(10):
        dy, dx = (math.floor(uu[n, k] * 5) - 2 for k in (2, 3))
        same_bits(np.ascontiguousarray(out[n]),
                  np.ascontiguousarray(padded[n, 2 - dy : 7 - dy, 2 - dx : 8 - dx]))
    same_bits(np.ascontiguousarray(buf[..., 0]), source)  # x untouched
    with pytest.raises(ValueError, match="out must not overlap x"):
        fastreg.random_translate(buf[:, :, :, 0], 2, seed=0, out=buf[:, ::-1, :, 0],
                                 backend=backend)


def test_default_fill_is_zero_and_uint8_integral_float_fill(backend):
    x = np.full((8, 5, 5), 200, np.uint8)
    y = fastreg.random_translate(x, 2, seed=3, backend=backend)
    assert set(np.unique(y)) <= {0, 200} and (y == 0).any()
    z = fastreg.random_translate(x, 2, seed=3, fill=7.0, backend=backend)
    np.testing.assert_array_equal(z, np.where(y == 0, 7, 200))
