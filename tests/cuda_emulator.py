"""The CUDA kernels' C signatures, the launch-argument rules of ``cupy.RawKernel``, and a host
build of the real kernels that runs launches like a device (see ``cuda_emulator.h``).

Used by tests/test_cuda_compile.py (dry launches) and by the CuPy stand-in under
tests/emulated_cupy, which runs tests/test_gpu_cupy.py on a machine without a GPU.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

try:
    from ml_dtypes import bfloat16
except ImportError:  # the bfloat16 kernels then take no arrays here
    bfloat16 = None

HEADER = Path(__file__).with_name("cuda_emulator.h")

#: The element type a pointer parameter's array must have, by C type.
POINTER_DTYPES = {
    "fr_half": np.float16,
    "fr_bf16": bfloat16,
    "float": np.float32,
    "double": np.float64,
    "fr_u32": np.uint32,
    "fr_u64": np.uint64,
    "fr_u8": np.uint8,
    "fr_u16": np.uint16,
    "long long": np.int64,
    "unsigned char": np.bool_,
    "int": np.int32,
    "fr_compute<fr_half>::type": np.float32,
    "fr_compute<fr_bf16>::type": np.float32,
    "fr_compute<float>::type": np.float32,
    "fr_compute<double>::type": np.float64,
}
#: The exact NumPy scalar type a by-value parameter takes: RawKernel passes a scalar as its own
#: type's bytes, whatever the C parameter is, so anything else is silently misread.
SCALAR_TYPES = {
    "fr_u8": np.uint8,
    "fr_u16": np.uint16,
    "fr_u32": np.uint32,
    "fr_u64": np.uint64,
    "int": np.int32,
    "long long": np.int64,
    "float": np.float32,
    "double": np.float64,
    "fr_compute<fr_half>::type": np.float32,
    "fr_compute<fr_bf16>::type": np.float32,
    "fr_compute<float>::type": np.float32,
    "fr_compute<double>::type": np.float64,
}
_KERNEL = re.compile(r'extern "C" __global__ void (fastreg_\w+)\s*\(([^)]*)\)')


def compiler() -> str | None:
    """The host C++ compiler, or None."""
    return shutil.which("g++") or shutil.which("c++")


def signatures(code: str) -> dict[str, list[tuple[str, bool]]]:
    """``{kernel name: [(C type, is_pointer), ...]}`` of every kernel in a CUDA source text."""
    text = subprocess.run(
        [compiler(), "-E", "-P", "-x", "c++", "-D__CUDACC__", "-"],
        input=code, capture_output=True, text=True, check=True,
    ).stdout
    found = {}
    for name, params in _KERNEL.findall(text):
        parsed = []
        for param in params.split(","):
            ctype = " ".join(param.replace("*", " * ").split()[:-1])
            ctype = ctype.removeprefix("const ").removesuffix("__restrict__").strip()
            pointer = ctype.endswith("*")
            parsed.append((ctype.rstrip("* ").strip(), pointer))
        found[name] = parsed
    return found


def check_launch(name, params, grid, block, args, array_type) -> None:
    """Assert that ``kernel(grid, block, args)`` is a launch CuPy would pass on faithfully:
    the argument count, each pointer's array type and element type, each scalar's exact type."""
    assert len(args) == len(params), f"{name}: {len(args)} args for {len(params)} params"
    for position, ((ctype, pointer), arg) in enumerate(zip(params, args, strict=True)):
        where = f"{name} argument {position} ({ctype}{' *' if pointer else ''})"
        if pointer:  # layouts are the twin's business (a strided view may be intended)
            assert isinstance(arg, array_type), f"{where}: got {type(arg).__name__}"
            assert arg.dtype == POINTER_DTYPES[ctype], f"{where}: got dtype {arg.dtype}"
        else:
            assert type(arg) is SCALAR_TYPES[ctype], f"{where}: got {type(arg).__name__}"
    assert len(grid) == len(block) == 1, f"{name}: grid {grid}, block {block}"
    assert grid[0] >= 1 and 1 <= block[0] <= 1024, f"{name}: grid {grid}, block {block}"


_CTYPES = {
    np.dtype(np.uint8): ctypes.c_uint8,
    np.dtype(np.uint16): ctypes.c_uint16,
    np.dtype(np.uint32): ctypes.c_uint32,
    np.dtype(np.uint64): ctypes.c_uint64,
    np.dtype(np.int32): ctypes.c_int32,
    np.dtype(np.int64): ctypes.c_int64,
    np.dtype(np.float32): ctypes.c_float,
    np.dtype(np.float64): ctypes.c_double,
}


class EmulatedModule:
    """The kernels of ``code`` built for the host; ``function(name)(grid, block, args, address)``
    launches one, with ``address(array)`` giving a pointer argument's address."""

    def __init__(self, code: str):
        self.signatures = signatures(code)
        self._library = _build(code, tuple(sorted(self.signatures)))

    def launch(self, name: str, grid, block, args, address) -> None:
        params = self.signatures[name]
        values = []
        for (_, pointer), arg in zip(params, args, strict=True):
            if pointer:
                values.append(ctypes.c_void_p(address(arg)))
            else:
                values.append(_CTYPES[np.dtype(type(arg))](arg))
        pointers = (ctypes.c_void_p * max(1, len(values)))(
            *[ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in values]
        )
        entry = getattr(self._library, f"fr_emu_{name}")
        error = entry(pointers, grid[0], block[0])
        if error:
            raise RuntimeError(f"{name}: {error.decode()}")

    def vector_accesses(self) -> int:
        """Vector loads and stores (fr_quad, fr_bytes4) of every launch so far."""
        return self._library.fr_emu_vector_accesses()


def _entry_points(names: tuple[str, ...]) -> str:
    counter = ('extern "C" unsigned long long fr_emu_vector_accesses(void) '
               "{ return fr_emu::vector_accesses; }\n")
    return counter + "".join(
        f'extern "C" const char *fr_emu_{name}(void **args, unsigned grid, unsigned block) '
        f"{{ return fr_emu::launch_kernel(&{name}, args, grid, block); }}\n"
        for name in names
    )


@functools.cache
def _build(code: str, names: tuple[str, ...]) -> ctypes.CDLL:
    text = f'#include "{HEADER}"\n{code}\n{_entry_points(names)}'
    digest = hashlib.sha256((text + HEADER.read_text()).encode()).hexdigest()[:16]
    folder = Path(os.environ.get("FASTREG_EMULATOR_CACHE", Path(tempfile.gettempdir())))
    folder = folder / f"fastreg-cuda-emulator-{os.getuid()}"
    folder.mkdir(parents=True, exist_ok=True)
    library = folder / f"{digest}.so"
    if not library.exists():
        source = folder / f"{digest}.{os.getpid()}.cpp"
        source.write_text(text)
        partial = folder / f"{digest}.{os.getpid()}.so"
        # No FMA contraction, as on the device (cuda_launch.OPTIONS: --fmad=false).
        result = subprocess.run(
            [compiler(), "-std=c++17", "-O1", "-ffp-contract=off", "-fPIC", "-shared",
             "-Wno-unknown-pragmas", "-o", str(partial), str(source)],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"the emulator build of {source} failed:\n{result.stderr}")
        partial.replace(library)  # atomic: concurrent test processes never load half a file
        source.unlink()
    lib = ctypes.CDLL(str(library))
    lib.fr_emu_vector_accesses.argtypes = ()
    lib.fr_emu_vector_accesses.restype = ctypes.c_ulonglong
    for name in names:
        entry = getattr(lib, f"fr_emu_{name}")
        entry.argtypes = (ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint)
        entry.restype = ctypes.c_char_p
    return lib

