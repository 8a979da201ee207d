"""The GPU code, checked without a GPU (CI has none).

1. Every ``kernels/<family>/<family>.cu`` is compiled with nvcc for sm_80 and sm_90, as the exact
   text the CuPy loader compiles (``cuda_launch.source``: the rendered preambles first) with the
   loader's options; where CuPy's NVRTC is importable, with NVRTC too (no system headers there).
2. The shared ``__host__ __device__`` functions (Philox, the keep rule, the select-and-scale and
   Box-Muller, and the per-work-item bodies of the kernels) are compiled into a host library with
   nvcc and compared with the NumPy stream and with the formulas of docs/contract/.

Skips cleanly when nvcc is missing.
"""

from __future__ import annotations

import ctypes
import math
import re
import shutil
import subprocess
from pathlib import Path

import cuda_emulator
import numpy as np
import pytest
from helpers import NORMAL_RTOL, assert_gaussian_close

from fastreg._kernels import cuda_launch as cl
from fastreg._kernels.dense import ACTIVATIONS as DENSE_ACTIVATIONS
from fastreg._kernels.dense import ref_numpy as dense_ref
from fastreg._kernels.dropconnect import ref_numpy as dropconnect_ref
from fastreg._kernels.dropout import ref_numpy as dropout_ref
from fastreg._kernels.philox import ref_numpy as philox_ref
from fastreg._kernels.philox.cuda_source import philox_preamble
from fastreg._kernels.prox import ref_numpy as prox_ref
from fastreg.random import dropout_scale, kernel_threshold

NVCC = shutil.which("nvcc")
pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")

ARCHS = ("sm_80", "sm_90")
FAMILY_SOURCES = sorted(cl.KERNEL_DIR.glob("*/*.cu"))
HARNESS = Path(__file__).with_name("cuda_host_harness.cu")
#: Families whose device functions the host harness calls, in inclusion order.
HOST_FAMILIES = ("philox", "dropout", "prox", "dropconnect", "dense")

#: Kernels each family's gpu_cupy.py looks up; a renamed or missing entry point fails here.
FLOAT_SUFFIXES = tuple(t.suffix for t in cl.FLOAT_TYPES.values())
ENTRY_POINTS = {
    "philox": {"fastreg_philox_rounds_u32", "fastreg_philox_bits_u32"},
    "dropout": {"fastreg_dropout_mask_bool"}
    | {
        f"fastreg_{op}_{s}"
        for op in ("dropout_apply", "dropout_applypair", "gaussian_apply")
        for s in FLOAT_SUFFIXES
    },
    "prox": {f"fastreg_prox_{op}_{s}" for op in ("sgd", "adam", "group") for s in FLOAT_SUFFIXES},
    "dropconnect": {
        f"fastreg_dropconnect_{stage}_{s}"
        for stage in ("forward", "dx", "dw", "dwsum", "relumean")
        for s in FLOAT_SUFFIXES
    },
    "dense": {f"fastreg_dense_{stage}_{s}" for stage in ("forward", "backward", "db")
              for s in FLOAT_SUFFIXES},
    "augment": {f"fastreg_{op}_{s}" for op in ("augment_move", "affine_nearest")
                for s in ("u8", "u16", "u32", "u64")}
    | {f"fastreg_affine_bilinear_{s}" for s in ("u8", "f16", "bf16", "f32", "f64")},
}
ENTRY_NAME = re.compile(
    r"fastreg_[a-z0-9]+(?:_[a-z0-9]+)*_(?:f16|bf16|f32|f64|bool|u8|u16|u32|u64)"
)

KNOWN_ANSWERS = [  # Random123 tests/kat_vectors, philox4x32 10 rounds
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]
KEYS = [(0, 0), (0xDEADBEEF, 0x12345678), (0xFFFFFFFF, 0xFFFFFFFF)]

#: Element shifts of an array from a 64-byte boundary: 0 takes the kernels' vector (quad) path,
#: 1 the element-by-element one.
SHIFTS = [pytest.param(0, id="aligned"), pytest.param(1, id="misaligned")]


def _placed(a, shift):
    """A copy of ``a`` that starts ``shift`` elements after a 64-byte boundary."""
    if a is None:
        return None
    itemsize = a.dtype.itemsize
    raw = np.empty(a.nbytes + 64 + shift * itemsize, np.uint8)
    start = -raw.ctypes.data % 64 + shift * itemsize
    placed = raw[start : start + a.nbytes].view(a.dtype).reshape(a.shape)
    placed[...] = a
    assert placed.ctypes.data % 64 == shift * itemsize
    return placed


def _nvcc(*args: str) -> None:
    result = subprocess.run([NVCC, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"nvcc {' '.join(args)} failed:\n{result.stderr}"


# ------------------------------------------------------------------------ 1. device compiles


def test_every_cu_is_a_family_source_the_loader_finds():
    assert FAMILY_SOURCES, "no .cu files under kernels/"
    for path in FAMILY_SOURCES:
        assert path == cl.cu_path(path.parent.name), f"{path} is not <family>/<family>.cu"


@pytest.mark.parametrize("path", FAMILY_SOURCES, ids=lambda p: p.parent.name)
def test_source_includes_no_header(path):
    # NVRTC (CuPy's compiler) finds neither curand nor the C library.
    assert "#include" not in cl.source(path.parent.name)


@pytest.fixture(scope="session")
def cubins(tmp_path_factory):
    """``{(family, arch): cubin bytes}``, compiled once per session."""
    folder = tmp_path_factory.mktemp("cubin")
    built = {}
    for path in FAMILY_SOURCES:
        family = path.parent.name
        source = folder / f"{family}.cu"
        source.write_text(cl.source(family))
        for arch in ARCHS:
            target = folder / f"{family}.{arch}.cubin"
            _nvcc(f"-arch={arch}", "-cubin", *cl.OPTIONS, "-o", str(target), str(source))
            built[family, arch] = target.read_bytes()
    return built


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("path", FAMILY_SOURCES, ids=lambda p: p.parent.name)
def test_nvcc_compiles_each_family(cubins, path, arch):
    family = path.parent.name
    entries = set(re.findall(rb"\.text\.(fastreg_\w+)", cubins[family, arch]))
    names = {e.decode() for e in entries}
    assert names, f"{family}.cu defines no fastreg_ kernel"
    for name in names:
        assert ENTRY_NAME.fullmatch(name), f"{name} is not fastreg_<op>_<stage>_<dtype>"
    missing = ENTRY_POINTS.get(family, set()) - names
    assert not missing, f"{family}.cu lacks kernels its gpu_cupy.py launches: {sorted(missing)}"


#: Elementwise kernels whose threads move their four elements as one vector access, and the
#: vector access each element type compiles to: 16 bytes (float32, and float64 as two halves),
#: 8 bytes (the 16-bit types), 4 bytes (mask bytes).
VECTOR_KERNELS = {
    "dropout": ("dropout_apply", "dropout_applypair", "gaussian_apply"),
    "prox": ("prox_sgd", "prox_adam"),
}
VECTOR_OPS = {"f16": "v4.u16", "bf16": "v4.u16", "f32": "v4.f32", "f64": "v2.f64"}


@pytest.fixture(scope="session")
def ptx(tmp_path_factory):
    """``{family: {kernel: body}}`` of the sm_80 PTX of the vectorized families."""
    folder = tmp_path_factory.mktemp("ptx")
    bodies = {}
    for family in VECTOR_KERNELS:
        source, target = folder / f"{family}.cu", folder / f"{family}.ptx"
        source.write_text(cl.source(family))
        _nvcc("-arch=sm_80", "-ptx", *cl.OPTIONS, "-o", str(target), str(source))
        entries = re.findall(r"\.entry (fastreg_\w+)\((.*?)\n\}\n", target.read_text(), re.S)
        bodies[family] = dict(entries)
    return bodies


@pytest.mark.parametrize("family", sorted(VECTOR_KERNELS))
def test_elementwise_kernels_use_vector_loads_and_stores(ptx, family):
    for op in VECTOR_KERNELS[family]:
        for suffix, vector in VECTOR_OPS.items():
            body = ptx[family][f"fastreg_{op}_{suffix}"]
            for access in ("ld", "st"):
                pattern = rf"\b{access}(?:\.global)?(?:\.nc)?\.{re.escape(vector)}\b"
                assert re.search(pattern, body), f"fastreg_{op}_{suffix}: no {access}.{vector}"
    if family == "dropout":
        mask = ptx[family]["fastreg_dropout_mask_bool"]
        assert re.search(r"\bst(?:\.global)?\.(?:v4\.u8|u32|b32)\b", mask), "mask: no 4-byte store"


def _nvrtc():
    try:
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
    except Exception:  # no CuPy, or no NVRTC library: the nvcc compile above still ran
        return None
    return nvrtc


@pytest.mark.parametrize("path", FAMILY_SOURCES, ids=lambda p: p.parent.name)
def test_nvrtc_compiles_each_family(path):
    nvrtc = _nvrtc()
    if nvrtc is None:
        pytest.skip("CuPy's NVRTC is not importable")
    family = path.parent.name
    program = nvrtc.createProgram(cl.source(family), f"{family}.cu", [], [])
    try:
        nvrtc.compileProgram(program, ["-arch=compute_80", *cl.OPTIONS])
    except Exception as error:
        pytest.fail(f"NVRTC failed on {family}.cu: {error}\n{nvrtc.getProgramLog(program)}")


# ----------------------------------------------------------- 2. host library of the same code

_U32P = np.ctypeslib.ndpointer(np.uint32, flags="C_CONTIGUOUS")
_U16P = np.ctypeslib.ndpointer(np.uint16, flags="C_CONTIGUOUS")
_U64P = np.ctypeslib.ndpointer(np.uint64, flags="C_CONTIGUOUS")
_U8P = np.ctypeslib.ndpointer(np.uint8, flags="C_CONTIGUOUS")
_F32P = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
_F64P = np.ctypeslib.ndpointer(np.float64, flags="C_CONTIGUOUS")
_u32, _u64, _int, _f64 = ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int, ctypes.c_double
_SIGNATURES = {
    "fr_host_philox": (_U32P, _U32P, _U32P, _u64, _int),
    "fr_host_bits_at": (_U64P, _U32P, _u64, _u32, _u32, _u32, _u32),
    "fr_host_random_bits": (_U32P, _u64, _u64, _u32, _u32, _u32, _u32),
    "fr_host_half_to_float": (_U16P, _F32P, _u64),
    "fr_host_float_to_half": (_F32P, _U16P, _u64),
    "fr_host_bf16_to_float": (_U16P, _F32P, _u64),
    "fr_host_float_to_bf16": (_F32P, _U16P, _u64),
    "fr_host_keep": (_U32P, _U8P, _u64, _u64),
    "fr_host_mask": (_U8P, _u64, _u32, _u32, _u32, _u32, _u64),
    "fr_host_normals_at": (_U64P, _F64P, _u64, _u32, _u32, _u32),
    "fr_host_dropout_f32": (_F32P, _F32P, _u64, _u32, _u32, _u32, _u32, _u64, ctypes.c_float),
    "fr_host_dropout_f64": (_F64P, _F64P, _u64, _u32, _u32, _u32, _u32, _u64, _f64),
    "fr_host_dropout_pair_f32": (
        _F32P, _F32P, _F32P, _u64, _u32, _u32, _u32, _u32, _u64, ctypes.c_float
    ),
    "fr_host_dropout_pair_f64": (_F64P, _F64P, _F64P, _u64, _u32, _u32, _u32, _u32, _u64, _f64),
    "fr_host_gaussian_f32": (_F32P, _F32P, _u64, _u32, _u32, _u32, _f64, _f64),
    "fr_host_gaussian_f64": (_F64P, _F64P, _u64, _u32, _u32, _u32, _f64, _f64),
    "fr_host_group_scales": (_F64P, _F64P, _F64P, _u64, _f64, _f64),
}
_VOIDP = ctypes.c_void_p
for _suffix, _ctype in (("f32", ctypes.c_float), ("f64", _f64)):
    _SIGNATURES[f"fr_host_sgd_{_suffix}"] = (*[_VOIDP] * 4, _u64, *[_ctype] * 4, _int)
    _SIGNATURES[f"fr_host_adam_{_suffix}"] = (*[_VOIDP] * 5, _u64, *[_ctype] * 10, _int)
for _suffix, _ctype, _ptr_t in (("f32", ctypes.c_float, _F32P), ("f64", _f64, _F64P)):
    _SIGNATURES[f"fr_host_dc_forward_{_suffix}"] = (
        *[_ptr_t] * 4, _u64, _u64, _u64, _int, _u32, _u32, _u32, _u32, _u64, _ctype, _u64, _int
    )
    _SIGNATURES[f"fr_host_dc_backward_{_suffix}"] = (
        *[_ptr_t] * 6, *[_u64] * 5, _u32, _u32, _u32, _u32, _u64, _ctype, _u64, _int
    )
_SIGNATURES["fr_host_dc_relu_mean"] = (_F64P, _F64P, _F64P, _u64)
for _suffix, _ctype, _ptr_t in (("f32", ctypes.c_float, _F32P), ("f64", _f64, _F64P)):
    _SIGNATURES[f"fr_host_dense_act_{_suffix}"] = (_ptr_t, _ptr_t, _u64, _int, _ctype)
    _SIGNATURES[f"fr_host_dense_grad_{_suffix}"] = (*[_ptr_t] * 4, _u64, _int, _ctype)
    _SIGNATURES[f"fr_host_dense_forward_{_suffix}"] = (
        *[_ptr_t] * 3, _u64, _u64, _int, _int, _int, _u32, _u32, _u32, _u32, _u64, _ctype
    )
    _SIGNATURES[f"fr_host_dense_backward_{_suffix}"] = (
        *[_ptr_t] * 4, _F64P, _ptr_t, _u64, _u64, _u64, _int, _u32, _u32, _u32, _u32, _u64,
        _ctype, _ctype,
    )


@pytest.fixture(scope="session")
def host(tmp_path_factory):
    """The preambles, the family .cu files and the harness as one host library (ctypes)."""
    folder = tmp_path_factory.mktemp("cuda_host")
    source = folder / "host.cu"
    parts = [philox_preamble(), cl.dtype_preamble()]
    parts += [cl.cu_path(family).read_text() for family in HOST_FAMILIES]
    source.write_text("".join(parts) + HARNESS.read_text())
    library = folder / "libfastreg_host.so"
    _nvcc("-shared", "-Xcompiler", "-fPIC", "-O2", "-arch=sm_80", *cl.OPTIONS,
          "-o", str(library), str(source))
    lib = ctypes.CDLL(str(library))
    for name, argtypes in _SIGNATURES.items():
        getattr(lib, name).argtypes = argtypes
        getattr(lib, name).restype = None
    return lib


def _philox_host(host, counter, key, rounds=10):
    counter = np.ascontiguousarray(counter, np.uint32).reshape(-1, 4)
    key = np.ascontiguousarray(np.broadcast_to(key, (counter.shape[0], 2)), np.uint32)
    out = np.empty_like(counter)
    host.fr_host_philox(counter, key, out, counter.shape[0], rounds)
    return out


@pytest.mark.parametrize(("counter", "key", "expected"), KNOWN_ANSWERS)
def test_host_philox_known_answers(host, counter, key, expected):
    got = _philox_host(host, np.array(counter), np.array(key))
    assert tuple(int(w) for w in got[0]) == expected


@pytest.mark.parametrize("rounds", [0, 1, 7, 10])
def test_host_philox_matches_numpy_for_random_counters(host, rounds):
    rng = np.random.default_rng(rounds)
    counter = rng.integers(0, 2**32, (257, 4), dtype=np.uint32)
    key = rng.integers(0, 2**32, (257, 2), dtype=np.uint32)
    np.testing.assert_array_equal(
        _philox_host(host, counter, key, rounds), philox_ref.philox4x32(counter, key, rounds)
    )


def _bits_by_the_spec(index, k0, k1, salt, offset):
    """bits(i) of docs/contract/random-stream.md built from the NumPy round function: counter
    (lo, hi, salt, offset)."""
    index = np.asarray(index, np.uint64)
    block = index >> np.uint64(2)
    counter = np.stack(
        [
            (block & np.uint64(0xFFFFFFFF)).astype(np.uint32),
            (block >> np.uint64(32)).astype(np.uint32),
            np.full(index.shape, salt, np.uint32),
            np.full(index.shape, offset, np.uint32),
        ],
        axis=-1,
    )
    words = philox_ref.philox4x32(counter, np.array([k0, k1], np.uint32))
    return np.take_along_axis(words, (index & np.uint64(3)).astype(np.intp)[:, None], 1)[:, 0]


@pytest.mark.parametrize(("k0", "k1"), KEYS)
@pytest.mark.parametrize(("salt", "offset"), [(0, 0), (1, 7), (2, 0xFFFFFFFF), (0xABCDEF01, 3)])
def test_host_bits_at_any_index(host, k0, k1, salt, offset):
    rng = np.random.default_rng(salt ^ offset)
    index = np.concatenate(
        [
            np.arange(37, dtype=np.uint64),
            rng.integers(0, 2**64, 200, dtype=np.uint64, endpoint=False),
            np.array([4 * 2**32 - 1, 4 * 2**32, 4 * 2**32 + 3, 2**63 + 5, 2**64 - 1], np.uint64),
        ]
    )
    out = np.empty(index.size, np.uint32)
    host.fr_host_bits_at(index, out, index.size, salt, offset, k0, k1)
    np.testing.assert_array_equal(out, _bits_by_the_spec(index, k0, k1, salt, offset))


@pytest.mark.parametrize("start", [0, 1, 3, 4, 4 * 2**32 - 5, 4 * 2**32 + 2, 2**62 + 1])
@pytest.mark.parametrize("n", [1, 2, 5, 4099])
def test_host_random_bits_block_walk(host, start, n):
    k0, k1, salt, offset = 0x01234567, 0x89ABCDEF, 5, 11
    out = np.empty(n, np.uint32)
    host.fr_host_random_bits(out, start, n, k0, k1, salt, offset)
    np.testing.assert_array_equal(out, philox_ref.random_bits(n, k0, k1, salt, offset, start))


def test_host_half_to_float_matches_numpy_for_every_half(host):
    halves = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    out = np.empty(halves.size, np.float32)
    host.fr_host_half_to_float(halves, out, halves.size)
    expected = halves.view(np.float16).astype(np.float32)
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(out), nan)
    np.testing.assert_array_equal(out[~nan].view(np.uint32), expected[~nan].view(np.uint32))


def test_host_float_to_half_rounds_like_numpy(host):
    """Round to nearest even, as NumPy (and PTX cvt.rn): exact halves, the ties between
    neighbours (subnormal, normal, overflow to Inf at 65520), their float32 neighbours, and
    random bit patterns."""
    finite = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    finite = np.unique(finite[np.isfinite(finite)].astype(np.float64))
    ties = (finite[:-1] + finite[1:]) / 2
    special = [65504.0, 65519.996, 65520.0, 2.0**-24, 2.0**-25, 1.5 * 2.0**-25, 2.0**-26]
    values = np.concatenate([finite, ties, special, [np.inf, -np.inf, np.nan]]).astype(np.float32)
    values = np.concatenate([values, -values, np.nextafter(values, np.float32(np.inf)),
                             np.nextafter(values, np.float32(-np.inf))])
    random_bits = np.random.default_rng(0).integers(0, 2**32, 1_000_000, dtype=np.uint32)
    values = np.concatenate([values, random_bits.view(np.float32)])
    out = np.empty(values.size, np.uint16)
    host.fr_host_float_to_half(values, out, values.size)
    with np.errstate(over="ignore"):
        expected = values.astype(np.float16)
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(out.view(np.float16)), nan)
    np.testing.assert_array_equal(out[~nan], expected[~nan].view(np.uint16))


def test_host_bf16_to_float_is_exact_for_every_bfloat16(host):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    patterns = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    out = np.empty(patterns.size, np.float32)
    host.fr_host_bf16_to_float(patterns, out, patterns.size)
    # Widening is exact, NaN payloads included: the bits move up 16 places.
    np.testing.assert_array_equal(out.view(np.uint32), patterns.astype(np.uint32) << 16)
    expected = patterns.view(ml_dtypes.bfloat16).astype(np.float32)
    finite = ~np.isnan(expected)
    np.testing.assert_array_equal(out[finite], expected[finite])


def test_host_float_to_bf16_rounds_like_ml_dtypes(host):
    """Round to nearest even, as ml_dtypes and PyTorch: every bfloat16, the ties between
    neighbours (to even), their float32 neighbours, the overflow to Inf past the largest
    bfloat16, float32 subnormals (bfloat16 shares float32's exponent), NaN to sign|0x7FC0, and
    random bit patterns."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    every = np.arange(2**16, dtype=np.uint32) << 16
    lower, upper = every + 0x7FFF, every + 0x8000  # just below a tie, and the tie itself
    special = np.array([0x7F7FFFFF, 0x7F7F8000, 0x7F7F7FFF, 0x00000001, 0x00008000, 0x00018000,
                        0x7F800001, 0xFFC00001, 0x7FFFFFFF], np.uint32)
    random_bits = np.random.default_rng(0).integers(0, 2**32, 1_000_000, dtype=np.uint32)
    bits = np.concatenate([every, lower, upper, every + 0x8001, special, random_bits])
    values = bits.astype(np.uint32).view(np.float32)
    out = np.empty(values.size, np.uint16)
    host.fr_host_float_to_bf16(values, out, values.size)
    with np.errstate(over="ignore", invalid="ignore"):
        expected = values.astype(ml_dtypes.bfloat16).view(np.uint16)
    np.testing.assert_array_equal(out, expected)  # NaN included: both give sign|0x7FC0
    tie = np.uint32(0x3F808000).view(np.float32)  # halfway between 0x3F80 and 0x3F81: even
    host.fr_host_float_to_bf16(np.array([tie]), got := np.empty(1, np.uint16), 1)
    assert got[0] == 0x3F80


@pytest.mark.parametrize("p", [0.0, 2.0**-33, 1e-9, 0.1, 0.25, 0.5, 0.7, 1 - 2.0**-33, 1.0])
def test_host_keep_rule_at_the_threshold(host, p):
    threshold = kernel_threshold(p)
    near = [threshold + d for d in (-2, -1, 0, 1, 2)]
    bits = np.array([b for b in [0, 1, 2**31, 2**32 - 2, 2**32 - 1, *near] if 0 <= b < 2**32],
                    np.uint32)
    out = np.empty(bits.size, np.uint8)
    host.fr_host_keep(bits, out, bits.size, threshold)
    expected = [b >= min(math.floor(p * 2**32), 2**32 - 1) and p < 1.0 for b in bits.tolist()]
    np.testing.assert_array_equal(out.astype(bool), expected)
    if p == 1.0:
        assert not out.any()  # drop all, even bits == 2**32 - 1
    if p == 0.0:
        assert out.all()


@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("n", [1, 3, 4, 5, 1023, 4097])
@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 1.0])
def test_host_mask_matches_numpy(host, n, p, shift):
    args = (0xCAFEF00D, 0x1, 0, 9, kernel_threshold(p))
    out = _placed(np.empty(n, np.uint8), shift)
    host.fr_host_mask(out, n, *args)
    np.testing.assert_array_equal(out.astype(bool), dropout_ref.keep_mask(n, *args))


def _special_data(n, dtype):
    x = np.random.default_rng(n).standard_normal(n).astype(dtype)
    x[: min(n, 3)] = [np.nan, np.inf, -np.inf][: min(n, 3)]
    return x




@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("n", [1, 6, 1001])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 1.0])
def test_host_dropout_body_matches_numpy_bitwise(host, dtype, n, p, shift):
    x = _placed(_special_data(n, dtype), shift)
    key, salt, offset, threshold = (77, 3), 0, 5, kernel_threshold(p)
    scale = dropout_scale(p, dtype)
    expected = np.empty_like(x)
    with np.errstate(invalid="ignore"):  # NaN * scale in the reference, then selected away
        dropout_ref.dropout_apply(x, expected, *key, salt, offset, threshold, scale)
    out = _placed(np.full_like(x, 123.0), shift)
    suffix = cl.float_type(dtype).suffix
    getattr(host, f"fr_host_dropout_{suffix}")(x, out, n, *key, salt, offset, threshold, scale)
    assert out.tobytes() == expected.tobytes()  # dropped NaN/Inf are +0.0, exactly
    if p == 1.0:
        assert not np.signbit(out).any() and not out.any()


@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("n", [1, 6, 1001])
@pytest.mark.parametrize("p", [0.3, 0.5, 1.0])
def test_host_dropout_pair_body_masks_both_like_numpy(host, dtype, n, p, shift):
    x = _placed(_special_data(n, dtype), shift)
    g = _placed(np.random.default_rng(n + 1).standard_normal(n).astype(dtype), shift)
    key, salt, offset, threshold = (5, 8), 1, 2, kernel_threshold(p)
    scale = dropout_scale(p, dtype)
    expected_out, expected_g = np.empty_like(x), np.empty_like(g)
    with np.errstate(invalid="ignore"):
        dropout_ref.dropout_apply(x, expected_out, *key, salt, offset, threshold, scale)
        dropout_ref.dropout_apply(g, expected_g, *key, salt, offset, threshold, scale)
    out = _placed(np.full_like(x, 123.0), shift)
    suffix = cl.float_type(dtype).suffix
    getattr(host, f"fr_host_dropout_pair_{suffix}")(
        x, out, g, n, *key, salt, offset, threshold, scale
    )
    assert out.tobytes() == expected_out.tobytes()
    assert g.tobytes() == expected_g.tobytes()


def test_host_normals_within_a_few_ulp(host):
    n = 20_001
    k0, k1, offset = 0x9E3779B9, 42, 17
    index = np.arange(n, dtype=np.uint64)
    out = np.empty(n, np.float64)
    host.fr_host_normals_at(index, out, n, offset, k0, k1)
    reference = philox_ref.normals(n, k0, k1, 2, offset)
    # relative to n: both take cos of the same double, each within its libm's few ulp
    np.testing.assert_allclose(out, reference, rtol=NORMAL_RTOL, atol=0)
    far = np.array([2**33 + 1, 2**40, 2**63 - 2], np.uint64)  # pair blocks past 2**32
    host.fr_host_normals_at(far, got := np.empty(3), 3, offset, k0, k1)
    words = [philox_ref.philox4x32([int(i >> 1) & 0xFFFFFFFF, int(i >> 1) >> 32, 2, offset],
                                   [k0, k1]) for i in far.tolist()]
    u = [((w[2 * (i & 1)] + 0.5) * 2.0**-32, (w[2 * (i & 1) + 1] + 0.5) * 2.0**-32)
         for w, i in zip(words, far.tolist(), strict=True)]
    expected = [math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2) for u1, u2 in u]
    np.testing.assert_allclose(got, np.array(expected), rtol=NORMAL_RTOL, atol=0)


@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(("additive", "multiplicative"), [(0.7, 0.0), (0.0, 1.3)])
def test_host_gaussian_body_matches_numpy(host, dtype, additive, multiplicative, shift):
    n = 4097
    x = _placed(np.random.default_rng(1).standard_normal(n).astype(dtype), shift)
    expected = np.empty_like(x)
    dropout_ref.gaussian_apply(x, expected, 5, 6, 3, additive, multiplicative)
    out = _placed(np.empty_like(x), shift)
    suffix = cl.float_type(dtype).suffix
    getattr(host, f"fr_host_gaussian_{suffix}")(x, out, n, 5, 6, 3, additive, multiplicative)
    # Double transcendentals differ by a few ulp on any libm: the formula's error bound, not an
    # ulp bound on x + s*n (ill-conditioned where x and s*n cancel).
    assert_gaussian_close(out, expected, x)


# ------------------------------------------------- 3. dry launches of the gpu_cupy.py twins
# The CuPy twins run here against a NumPy stand-in for CuPy and a recorder for kernels: every
# launch's arguments are checked against the C signature of the kernel it names (count, pointer
# element types, exact scalar types), the silent failure mode of cupy.RawKernel.

@pytest.fixture(scope="session")
def kernel_signatures():
    """``{kernel name: [(C type, is_pointer), ...]}`` of every family's kernels."""
    if cuda_emulator.compiler() is None:
        pytest.skip("no host C++ preprocessor")
    found = {}
    for path in FAMILY_SOURCES:
        found.update(cuda_emulator.signatures(cl.source(path.parent.name)))
    return found


class _Recorder:
    def __init__(self, name, signatures, launches):
        self.name, self.signatures, self.launches = name, signatures, launches

    def __call__(self, grid, block, args):
        assert self.name in self.signatures, f"no kernel {self.name} in any .cu"
        cuda_emulator.check_launch(self.name, self.signatures[self.name], grid, block, args,
                                   np.ndarray)
        self.launches.append(self.name)


@pytest.fixture
def dry(monkeypatch, kernel_signatures):
    """``(import_twin, launches)``: imports a gpu_cupy module over NumPy, records launches."""
    import importlib
    import sys
    import types

    stub = types.ModuleType("cupy")
    for name in ("empty", "zeros", "ascontiguousarray", "asarray", "abs", "float16",
                 "float32", "float64", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "bool_", "intp", "uintp"):
        setattr(stub, name, getattr(np, name))

    def matmul(a, b, out=None):
        # In the operands' dtype, as CuPy's is (NumPy's bfloat16 matmul returns float32).
        product = np.matmul(a, b).astype(np.result_type(a, b), copy=False)
        if out is None:
            return product
        out[...] = product
        return out

    stub.matmul = matmul
    monkeypatch.setitem(sys.modules, "cupy", stub)
    launches: list[str] = []
    monkeypatch.setattr(cl, "pointer", lambda a: 0 if a is None else a.ctypes.data)
    monkeypatch.setattr(
        cl, "_module",
        lambda family: types.SimpleNamespace(
            get_function=lambda name: _Recorder(name, kernel_signatures, launches)
        ),
    )

    def import_twin(family):
        name = f"fastreg._kernels.{family}.gpu_cupy"
        monkeypatch.setitem(sys.modules, name, None)  # restored (or removed) after the test
        del sys.modules[name]
        return importlib.import_module(name)

    with cl.launch_config(block_size=64, max_blocks=3):
        yield import_twin, launches


def test_dry_launch_philox(dry):
    import_twin, launches = dry
    twin = import_twin("philox")
    counter = np.zeros((5, 4), np.uint32)
    assert twin.philox4x32(counter, np.zeros((5, 2), np.uint32), 10).shape == (5, 4)
    assert twin.random_bits(9, 1, 2, 3, 4, 5).shape == (9,)
    assert twin.random_bits(0, 1, 2, 3, 4).shape == (0,)
    assert launches == ["fastreg_philox_rounds_u32", "fastreg_philox_bits_u32"]


@pytest.mark.parametrize("dtype", list(cl.FLOATS), ids=str)
def test_dry_launch_dropout(dry, dtype):
    import_twin, launches = dry
    twin = import_twin("dropout")
    x = np.ones(7, dtype)
    assert twin.keep_mask(7, 1, 2, 0, 3, kernel_threshold(1.0)).dtype == np.bool_
    twin.dropout_apply(x, np.empty_like(x), 1, 2, 0, 3, 2**31, dropout_scale(0.5, dtype))
    twin.dropout_apply_pair(x, np.empty_like(x), x.copy(), 1, 2, 1, 3, 2**31, 2.0)
    twin.gaussian_apply(x, np.empty_like(x), 1, 2, 3, 0.5, 0.0)
    suffix = cl.float_type(dtype).suffix
    assert launches == [
        "fastreg_dropout_mask_bool",
        f"fastreg_dropout_apply_{suffix}",
        f"fastreg_dropout_applypair_{suffix}",
        f"fastreg_gaussian_apply_{suffix}",
    ]
    with pytest.raises(ValueError, match="contiguous"):
        twin.dropout_apply(np.ones(8, dtype)[::2], np.empty(4, dtype), 1, 2, 0, 3, 0, 1.0)


# ----------------------------------------------------------------------- prox: host and dry


def _ptr(a):
    return None if a is None else a.ctypes.data


def _prox_data(n, dtype, seed):
    rng = np.random.default_rng(seed)
    w, grad, state = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    w[:3] = [0.001, -0.001, np.nan]  # inside the threshold (exact +0.0) and NaN through
    grad[:3] = 0.0
    mask = rng.random(n) < 0.8
    return w, grad, state, mask


@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(("momentum", "nesterov", "with_mask"),
                         [(0.0, False, False), (0.9, False, True), (0.9, True, False)])
def test_host_sgd_element_matches_numpy_bitwise(host, dtype, momentum, nesterov, with_mask,
                                                shift):
    n = 1001
    w, grad, buf, mask = (_placed(a, shift) for a in _prox_data(n, dtype, 3))
    mask = mask if with_mask else None
    lr, l1, l2 = 0.1, 0.05, 0.01
    t = np.dtype(dtype).type
    scalars = (t(lr), t(lr * l1), t(1.0 / (1.0 + 2.0 * lr * l2)), t(momentum))
    use_buf = momentum > 0
    ref_w, ref_buf = w.copy(), buf.copy()
    prox_ref.sgd_update(ref_w, grad, ref_buf if use_buf else None, mask, *scalars, nesterov)
    mask8 = None if mask is None else mask.view(np.uint8)
    suffix = cl.float_type(dtype).suffix
    getattr(host, f"fr_host_sgd_{suffix}")(_ptr(w), _ptr(grad), _ptr(buf) if use_buf else None,
                                           _ptr(mask8), n, *scalars, int(nesterov))
    assert w.tobytes() == ref_w.tobytes()
    assert buf.tobytes() == ref_buf.tobytes()
    if momentum == 0:  # w[0] and w[1] lie inside the threshold: exact +0.0
        assert not w[:2].any() and not np.signbit(w[:2]).any()
    assert np.isnan(w[2]) == (mask is None or mask[2])


@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(("l1", "l2", "weight_decay"), [(0.0, 0.0, 0.01), (0.01, 0.02, 0.0)])
@pytest.mark.parametrize("metric", [1, 2], ids=["adam-metric", "decoupled"])
def test_host_adam_element_matches_numpy_bitwise(host, dtype, l1, l2, weight_decay, shift,
                                                 metric):
    n, step, lr, beta1, beta2, eps = 999, 3, 1e-2, 0.9, 0.999, 1e-8
    w, grad, m, mask = (_placed(a, shift) for a in _prox_data(n, dtype, 4))
    v = _placed(np.abs(m) * dtype(0.1), shift)
    host_scalars = (beta1, 1 - beta1, beta2, 1 - beta2, lr / (1 - beta1**step),
                    1 / math.sqrt(1 - beta2**step), eps, 1 - lr * weight_decay, lr * l1,
                    2 * lr * l2)
    scalars = tuple(np.dtype(dtype).type(s) for s in host_scalars)
    prox = metric if l1 > 0 or l2 > 0 else 0  # the twins' prox code (fastreg.prox_adam_)
    ref = [a.copy() for a in (w, m, v)]
    prox_ref.adam_update(ref[0], grad, ref[1], ref[2], mask, *scalars, prox)
    suffix = cl.float_type(dtype).suffix
    getattr(host, f"fr_host_adam_{suffix}")(_ptr(w), _ptr(grad), _ptr(m), _ptr(v),
                                            _ptr(mask.view(np.uint8)), n, *scalars, int(prox))
    for got, expected in zip((w, m, v), ref, strict=True):
        assert got.tobytes() == expected.tobytes()


def test_host_group_scales_match_numpy(host):
    norms = np.array([0.0, 0.5, 1.0, 1.0 + 2**-52, 2.0, 1e150])
    lasso, bounded = np.empty_like(norms), np.empty_like(norms)
    host.fr_host_group_scales(norms, lasso, bounded, norms.size, 1.0, 1.0)
    # A group of one element of value x has norm |x| exactly.
    rows = norms[:, None].copy()
    prox_ref.group_lasso(rows, 1.0)
    np.testing.assert_array_equal(rows[:, 0], norms * lasso)
    rows = norms[:, None].copy()
    prox_ref.max_norm(rows, 1.0)
    np.testing.assert_array_equal(rows[:, 0], norms * bounded)


@pytest.mark.parametrize("dtype", list(cl.FLOATS), ids=str)
def test_dry_launch_prox(dry, dtype):
    import_twin, launches = dry
    twin = import_twin("prox")
    t = np.dtype(dtype).type
    ws = [np.ones(5, dtype), np.ones((3, 4), dtype, order="F"), np.ones(0, dtype)]
    grads = [np.ones_like(w) for w in ws]
    masks = [None, np.ones((3, 4), bool, order="F"), None]
    twin.sgd_update(ws[0], grads[0], None, None, t(0.1), t(0.0), t(1.0), t(0.0), False)
    twin.sgd_update_many(ws, grads, [np.zeros_like(w) for w in ws], masks,
                         t(0.1), t(0.0), t(1.0), t(0.9), True)
    twin.adam_update_many(ws, grads, [np.zeros_like(w) for w in ws],
                          [np.zeros_like(w) for w in ws], masks, *[t(0.5)] * 10, True)
    twin.adam_update(ws[0], grads[0], np.zeros(5, dtype), np.zeros(5, dtype), None,
                     *[t(0.5)] * 10, False)
    twin.group_lasso(np.ones((6, 8), dtype)[::2, ::-2], 0.5)
    twin.max_norm(np.ones((6, 8), dtype).T, 0.5)
    sums = twin.abs_square_sums(np.full((2, 3), -2.0, dtype))
    assert sums == (12.0, 24.0)
    suffix = cl.float_type(dtype).suffix
    assert launches == [f"fastreg_prox_{op}_{suffix}"
                        for op in ("sgd", "sgd", "adam", "adam", "group", "group")]
    with pytest.raises(ValueError, match="memory order"):
        twin.sgd_update(ws[1], np.ones((3, 4), dtype), None, None, *[t(0.1)] * 4, False)


@pytest.mark.parametrize("family", ["philox", "dropout", "prox", "dropconnect", "augment"])
def test_gpu_twin_offers_the_reference_interface(dry, family):
    import importlib
    import inspect

    import_twin, _ = dry
    twin = import_twin(family)
    reference = importlib.import_module(f"fastreg._kernels.{family}.ref_numpy")

    def interface(module):
        return {name: list(inspect.signature(getattr(module, name)).parameters)
                for name in module.__all__}

    assert interface(twin) == interface(reference)


# ------------------------------------------------------------------ dropconnect: host and dry
# The tiled per-example kernels run on the host through the harness: the very tile bodies the
# GPU runs (fr_block_run phases), with emulated blocks and threads.

DC_STREAM = (0x01234567, 0x9ABCDEF0, 1, 7)
#: (blocks, threads): one thread, odd sizes, more blocks than tiles.
DC_LAUNCHES = [(1, 1), (3, 37), (1000, 256)]
#: (B, K, N): 1x1, sizes not divisible by 4 or by the tiles (8 x 16 x 64), several tiles.
DC_SHAPES = [(1, 1, 1), (3, 5, 7), (17, 13, 4), (11, 33, 130), (20, 2, 203), (0, 3, 4), (5, 0, 3)]


def _dc_inputs(B, K, N, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(s).astype(dtype) for s in ((B, K), (K, N), (N,), (B, N)))


def _dc_host_forward(host, x, W, b, p, launch, stream=DC_STREAM):
    dtype = x.dtype
    (B, K), N = x.shape, W.shape[1]
    y = np.full((B, N), 5, dtype)
    bias = b if b is not None else y
    getattr(host, f"fr_host_dc_forward_{cl.float_type(dtype).suffix}")(
        x, W, bias, y, B, K, N, int(b is not None), *stream, kernel_threshold(p),
        dropout_scale(p, dtype), *launch)
    return y


def _dc_host_backward(host, dy, x, W, p, launch, segments=None, stream=DC_STREAM):
    """``(dx, dW)`` by the host kernels; ``segments=(count, examples each)``, default one."""
    dtype = x.dtype
    (B, K), N = x.shape, W.shape[1]
    segments, seg_len = (1, max(B, 1)) if segments is None else segments
    partial = np.full((segments, K, N), 9, dtype)
    dx, dW = np.full((B, K), 5, dtype), np.full((K, N), 5, dtype)
    getattr(host, f"fr_host_dc_backward_{cl.float_type(dtype).suffix}")(
        dy, x, W, dx, dW, partial, B, K, N, segments, seg_len, *stream, kernel_threshold(p),
        dropout_scale(p, dtype), *launch)
    return dx, dW


def _dc_close(got, expected):
    tol = 1e-5 if got.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * max(1.0, np.abs(expected).max(
        initial=0.0)))


@pytest.fixture
def dry_dropconnect_twin(monkeypatch):
    """gpu_cupy's pure-Python helpers (dw_segments) without CuPy: imported over a stub."""
    import importlib
    import sys
    import types

    name = "fastreg._kernels.dropconnect.gpu_cupy"
    monkeypatch.setitem(sys.modules, "cupy", types.ModuleType("cupy"))
    monkeypatch.setitem(sys.modules, name, None)  # restored (or removed) after the test
    del sys.modules[name]
    return importlib.import_module(name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", DC_SHAPES, ids=str)
def test_host_dropconnect_tiles_match_numpy(host, dtype, shape):
    B, K, N = shape
    x, W, b, dy = _dc_inputs(B, K, N, dtype)
    p = 0.3
    args = (*DC_STREAM, kernel_threshold(p), dropout_scale(p, dtype))
    y_ref = dropconnect_ref.example_forward(x, W, b, *args)
    dx_ref, dW_ref = dropconnect_ref.example_backward(dy, x, W, *args)
    outputs = []
    for launch in DC_LAUNCHES:
        y = _dc_host_forward(host, x, W, b, p, launch)
        dx, dW = _dc_host_backward(host, dy, x, W, p, launch)
        _dc_close(y, y_ref)
        _dc_close(dx, dx_ref)
        _dc_close(dW, dW_ref)
        outputs.append(b"".join(a.tobytes() for a in (y, dx, dW)))
    # One thread sums each output in a fixed order: any block size or grid gives the same bits.
    assert len(set(outputs)) == 1
    no_bias = _dc_host_forward(host, x, W, None, p, DC_LAUNCHES[1])
    _dc_close(no_bias, dropconnect_ref.example_forward(x, W, None, *args))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_host_dropconnect_dw_segments_match_numpy(host, dry_dropconnect_twin, dtype):
    B, K, N = 203, 5, 9  # one (K, N) tile: the batch is split into segments
    x, W, _, dy = _dc_inputs(B, K, N, dtype, seed=3)
    p = 0.5
    args = (*DC_STREAM, kernel_threshold(p), dropout_scale(p, dtype))
    dx_ref, dW_ref = dropconnect_ref.example_backward(dy, x, W, *args)
    segments, seg_len = dry_dropconnect_twin.dw_segments(B, K, N)
    assert segments > 1 and seg_len % dry_dropconnect_twin.TE == 0
    assert (segments - 1) * seg_len < B <= segments * seg_len
    results = set()
    for launch in DC_LAUNCHES:
        dx, dW = _dc_host_backward(host, dy, x, W, p, launch, (segments, seg_len))
        _dc_close(dx, dx_ref)
        _dc_close(dW, dW_ref)
        results.add(dW.tobytes())
    assert len(results) == 1


def test_dw_segments_bound_the_workspace(dry_dropconnect_twin):
    twin = dry_dropconnect_twin
    for B, K, N in [(0, 3, 4), (1, 1, 1), (7, 1000, 1000), (10**6, 4, 4), (10**6, 64, 700),
                    (33, 16, 64), (100_000, 0, 5)]:
        segments, seg_len = twin.dw_segments(B, K, N)
        assert segments >= 1 and seg_len >= 1 and seg_len % twin.TE == 0
        assert segments == 1 or (segments - 1) * seg_len < B <= segments * seg_len
        # The partial sums stay O(tile), whatever B*K*N is.
        assert segments == 1 or segments * K * N <= twin.SPLIT_TARGET * twin.TK * twin.TN


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_host_dropconnect_masks_exact(host, dtype):
    """One-hot x picks row e of example e's mask; x and dy of ones give dW = keep * scale."""
    K, N, p = 12, 70, 0.5
    W = np.random.default_rng(1).uniform(1.0, 2.0, (K, N)).astype(dtype)  # y != 0 iff kept
    bits = philox_ref.random_bits(K * K * N, *DC_STREAM[:2], *DC_STREAM[2:])
    keep = (bits.astype(np.int64) >= kernel_threshold(p)).reshape(K, K, N)
    for launch in DC_LAUNCHES:
        y = _dc_host_forward(host, np.eye(K, dtype=dtype), W, None, p, launch)
        rows = keep[np.arange(K), np.arange(K)]
        np.testing.assert_array_equal(y, np.where(rows, W * dtype(2), dtype(0)))
        _, dW = _dc_host_backward(host, np.ones((1, N), dtype), np.ones((1, K), dtype), W, p,
                                  launch)
        np.testing.assert_array_equal(dW, np.where(keep[0], dtype(2), dtype(0)))


def test_host_dropconnect_p_one_drops_everything(host):
    x, W, b, dy = _dc_inputs(9, 7, 5, np.float64)
    y = _dc_host_forward(host, x, W, b, 1.0, (2, 32))
    np.testing.assert_array_equal(y, np.broadcast_to(b, y.shape))
    dx, dW = _dc_host_backward(host, dy, x, W, 1.0, (2, 32))
    assert not dx.any() and not dW.any() and not np.signbit(dW).any()


def test_host_relu_gaussian_mean_matches_numpy(host):
    rng = np.random.default_rng(5)
    mean = np.concatenate([rng.standard_normal(999) * 3, [0.0, -1.0, 2.0, 40.0, -40.0]])
    std = np.concatenate([np.abs(rng.standard_normal(999)), [0.0, 0.0, 0.0, 1.0, 1.0]])
    out = np.empty_like(mean)
    host.fr_host_dc_relu_mean(mean, std, out, mean.size)
    # mean*Phi + std*phi cancels for mean << 0: compare to the size of the terms.
    np.testing.assert_allclose(out, dropconnect_ref.relu_gaussian_mean(mean, std), rtol=1e-13,
                               atol=1e-14 * (np.abs(mean) + std).max())
    assert out[-5:-2].tolist() == [0.0, 0.0, 2.0]


@pytest.mark.parametrize("dtype", list(cl.FLOATS), ids=str)
def test_dry_launch_dropconnect(dry, dtype):
    import_twin, launches = dry
    twin = import_twin("dropconnect")
    scale = dropout_scale(0.5, dtype)
    x, W, b, dy = (np.ones(s, dtype) for s in ((5, 3), (3, 7), (7,), (5, 7)))
    stream = (1, 2, 1, 3, kernel_threshold(0.5))
    assert twin.example_forward(x, W, b, *stream, scale).shape == (5, 7)
    assert twin.example_forward(x, W[:, ::-1], None, *stream, scale).shape == (5, 7)
    dx, dW = twin.example_backward(dy, x, W, *stream, scale)
    assert dx.shape == (5, 3) and dW.shape == (3, 7) and dx.dtype == dW.dtype == dtype
    big = np.ones((203, 3), dtype), np.ones((203, 7), dtype)  # few tiles: dW in segments
    twin.example_backward(big[1], big[0], W, *stream, scale)
    assert twin.relu_gaussian_mean(np.ones((2, 3), dtype), np.ones((2, 3), dtype)).shape == (2, 3)
    suffix = cl.float_type(dtype).suffix
    assert launches == [f"fastreg_dropconnect_{stage}_{suffix}"
                        for stage in ("forward", "forward", "dx", "dw", "dx", "dw", "dwsum",
                                      "relumean")]


# ------------------------------------------------------------------------ dense: host and dry
# The fused epilogues' bodies on the host, after a NumPy GEMM: the same GEMM bits the reference
# twin starts from, so identity and relu (no transcendental) must agree bit for bit.

DENSE_STREAM = (0xCAFEF00D, 0x12345678, 0, 6)
#: Activations whose GPU formulas use no transcendental: bit-equal to NumPy.
EXACT_ACTIVATIONS = ("identity", "relu")


def _dense_special(shape, dtype, seed=0):
    v = np.random.default_rng(seed).standard_normal(shape).astype(dtype) * dtype(3)
    flat = v.reshape(-1)
    flat[: min(flat.size, 6)] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 40.0][: min(flat.size, 6)]
    return v


def _dense_compare(got, expected, activation):
    if activation in EXACT_ACTIVATIONS:
        assert got.tobytes() == expected.tobytes()
    elif activation == "gelu":
        # The reference rounds z / sqrt(2) to the dtype before its float64 erf; the kernels (and
        # the Numba twin) widen z first: equal up to that rounding, relative to the magnitudes.
        tol = 2e-6 if got.dtype == np.float32 else 1e-14
        finite = np.isfinite(expected)
        np.testing.assert_array_equal(got[~finite], expected[~finite])
        np.testing.assert_allclose(got[finite], expected[finite], rtol=tol,
                                   atol=tol * float(np.abs(expected[finite]).max(initial=1.0)))
    else:  # libm and CUDA transcendentals differ by an ulp or two
        np.testing.assert_array_max_ulp(got, expected, maxulp=4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("activation", DENSE_ACTIVATIONS)
def test_host_dense_element_functions_match_numpy(host, dtype, activation):
    code = DENSE_ACTIVATIONS.index(activation)
    suffix = cl.float_type(dtype).suffix
    scale = dropout_scale(0.3, dtype)
    v = _dense_special(1003, dtype)
    out = np.empty_like(v)
    getattr(host, f"fr_host_dense_act_{suffix}")(v, out, v.size, code, scale)
    with np.errstate(invalid="ignore", over="ignore"):
        if activation == "gelu":  # evaluated in float64 and rounded once, as the CPU twins do
            wide = dense_ref.activate(v.astype(np.float64), activation) * np.float64(scale)
            expected = wide.astype(dtype)
        else:
            expected = dense_ref.activate(v, activation) * scale
    _dense_compare(out, expected, activation)
    # act' from a = act(z) (z for gelu), times dy * scale; finite inputs as the backward sees them
    z = np.random.default_rng(1).standard_normal(1003).astype(dtype) * dtype(3)
    a = dense_ref.activate(z, activation)
    dy = np.random.default_rng(2).standard_normal(1003).astype(dtype)
    grad = np.empty_like(z)
    getattr(host, f"fr_host_dense_grad_{suffix}")(dy, a, z, grad, z.size, code, scale)
    _dense_compare(grad, dy * scale * dense_ref.derivative(a, z, activation), activation)


def _dense_host_forward(host, x, W, b, p, activation, want_z=True):
    dtype = x.dtype
    y = x @ W  # the GEMM the reference twin computes, same bits
    m, n = y.shape
    z = np.full_like(y, 7) if want_z else y
    getattr(host, f"fr_host_dense_forward_{cl.float_type(dtype).suffix}")(
        y, z, b if b is not None else y, m * n, n, int(b is not None), int(want_z),
        DENSE_ACTIVATIONS.index(activation), *DENSE_STREAM, kernel_threshold(p),
        dropout_scale(p, dtype))
    return y, z


def _dense_host_backward(host, dy, x, W, y, z, p, activation, rows):
    dtype = dy.dtype
    m, n = dy.shape
    scale = dropout_scale(p, dtype)
    inverse = dtype.type(1 / scale if scale else 0)
    chunks = -(-m // rows)
    dz = np.full_like(dy, 7)
    partial = np.full((chunks, n), np.nan)
    db = np.full(n, 7, dtype)
    getattr(host, f"fr_host_dense_backward_{cl.float_type(dtype).suffix}")(
        dy, y, z if z is not None else y, dz, partial, db, m, n, rows,
        DENSE_ACTIVATIONS.index(activation), *DENSE_STREAM, kernel_threshold(p), scale, inverse)
    return dz, db


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("activation", DENSE_ACTIVATIONS)
@pytest.mark.parametrize(("m", "k", "n"), [(1, 1, 1), (3, 7, 9), (37, 13, 5), (67, 33, 129)])
@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_host_dense_epilogues_match_numpy(host, dtype, activation, m, k, n, p):
    rng = np.random.default_rng(m * n)
    x = rng.standard_normal((m, k)).astype(dtype)
    W = (rng.standard_normal((k, n)) / math.sqrt(k)).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    dy = rng.standard_normal((m, n)).astype(dtype)
    stream = (*DENSE_STREAM, kernel_threshold(p), dropout_scale(p, dtype))
    y_ref, z_ref = np.empty((m, n), dtype), np.empty((m, n), dtype)
    dense_ref.dense_forward(x, W, b, y_ref, z_ref, activation, *stream)
    y, z = _dense_host_forward(host, x, W, b, p, activation)
    assert z.tobytes() == z_ref.tobytes()
    _dense_compare(y, y_ref, activation)
    keep = dropout_ref.keep_mask(m * n, *DENSE_STREAM[:2], *DENSE_STREAM[2:],
                                 kernel_threshold(p)).reshape(m, n)
    assert not y[~keep].any() and not np.signbit(y[~keep]).any()  # dropped: exactly +0.0
    dx_ref, dW_ref, db_ref = dense_ref.dense_backward(dy, x, W, y_ref, z_ref, activation, *stream)
    dzs = set()
    for rows in sorted({1, 3, m}):
        dz, db = _dense_host_backward(host, dy, x, W, y_ref, z_ref, p, activation, rows)
        dzs.add(dz.tobytes())
        tol = 1e-5 if dtype == np.float32 else 1e-12
        for got, want in ((db, db_ref), (dz @ W.T, dx_ref), (x.T @ dz, dW_ref)):
            np.testing.assert_allclose(got, want, rtol=0,
                                       atol=tol * max(1.0, float(np.abs(want).max())))
        if activation in EXACT_ACTIVATIONS:
            assert (dz @ W.T).tobytes() == dx_ref.tobytes()  # dz itself is bit-equal
    assert len(dzs) == 1  # the row chunking never changes dz
    if p == 1.0:
        assert not y.any() and not dz.any()


def test_host_dense_forward_without_bias_or_z(host):
    x = np.random.default_rng(3).standard_normal((5, 6))
    W = np.random.default_rng(4).standard_normal((6, 11))
    y_ref = np.empty((5, 11))
    dense_ref.dense_forward(x, W, None, y_ref, None, "relu", *DENSE_STREAM, kernel_threshold(0.5),
                            dropout_scale(0.5, np.float64))
    y, _ = _dense_host_forward(host, x, W, None, 0.5, "relu", want_z=False)
    assert y.tobytes() == y_ref.tobytes()


def test_backward_chunks_cover_the_rows(dry):
    import_twin, _ = dry
    twin = import_twin("dense")
    for m, n in [(1, 1), (7, 3), (1000, 1), (4096, 1024), (10**6, 10), (3, 10**6)]:
        chunks, rows = twin.backward_chunks(m, n)
        assert chunks >= 1 and rows >= 1 and (chunks - 1) * rows < m <= chunks * rows
        assert chunks * n <= twin.BACKWARD_ITEMS * 4 + n  # the float64 partials stay small


@pytest.mark.parametrize("dtype", list(cl.FLOATS), ids=str)
def test_dry_launch_dense(dry, dtype):
    import_twin, launches = dry
    twin = import_twin("dense")
    stream = (1, 2, 0, 3, kernel_threshold(0.5), dropout_scale(0.5, dtype))
    x, W, b = np.ones((5, 3), dtype), np.ones((3, 7), dtype), np.ones(7, dtype)
    y, z = np.empty((5, 7), dtype), np.empty((5, 7), dtype)
    twin.dense_forward(x, W, b, y, z, "gelu", *stream)
    twin.dense_forward(x, W[:, ::-1], None, y, None, "relu", *stream)
    dx, dW, db = twin.dense_backward(np.ones((5, 7), dtype)[:, ::-1], x, W, y, z, "gelu", *stream)
    assert (dx.shape, dW.shape, db.shape) == ((5, 3), (3, 7), (7,))
    assert dx.dtype == dW.dtype == db.dtype == dtype and dx.flags.c_contiguous
    empty = twin.dense_backward(np.ones((0, 7), dtype), x[:0], W, y[:0], None, "relu", *stream)
    assert not empty[1].any() and not empty[2].any()
    suffix = cl.float_type(dtype).suffix
    assert launches == [f"fastreg_dense_{stage}_{suffix}"
                        for stage in ("forward", "forward", "backward", "db")]


def test_gpu_dense_twin_offers_the_reference_functions(dry):
    import inspect

    import_twin, _ = dry
    twin = import_twin("dense")
    assert set(twin.__all__) == {"dense_forward", "dense_backward"}
    for name in twin.__all__:
        assert (inspect.signature(getattr(twin, name)).parameters.keys()
                == inspect.signature(getattr(dense_ref, name)).parameters.keys())
