"""The update chains' C kernels (update_kernels.c): built at first use, loaded with ctypes.

The C source needs nothing but a C compiler and libm, so it builds in well under a
second on first use (no torch headers, no setup.py step at install time). The built
library is cached per source, compiler flags and machine under
$AIMC_CACHE_DIR/kernels (default ~/.cache/aimc/kernels), written under a temporary
name and renamed, so concurrent workers never load a half-written file. Without a
compiler, or if the build or the load fails (logged once), `library()` is None and
fused.py runs the same chains with torch ops.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("update_kernels.c")
# No fast-math and no fused multiply-adds: each float operation rounds as torch's does.
# Without errno and trap semantics (which change no value) floorf and sqrtf vectorise.
FLAGS = (
    "-O3",
    "-march=native",
    "-ffp-contract=off",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-fPIC",
    "-shared",
)


def cache_dir() -> Path:
    """Where built kernels are kept: $AIMC_CACHE_DIR/kernels, else ~/.cache/aimc/kernels."""
    root = os.environ.get("AIMC_CACHE_DIR") or Path.home() / ".cache" / "aimc"
    return Path(root) / "kernels"


def compiler() -> str | None:
    """The C compiler to build with: $CC, else cc, gcc or clang on PATH."""
    for name in (os.environ.get("CC", ""), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


@functools.cache
def library() -> ctypes.CDLL | None:
    """The loaded kernels, built first if this source was never built on this machine."""
    cc = compiler()
    if cc is None:
        log.info("no C compiler found: update chains run as torch ops")
        return None
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(
        b"\0".join([source, cc.encode(), *(f.encode() for f in FLAGS), _machine().encode()])
    ).hexdigest()[:16]
    target = cache_dir() / f"update_kernels-{digest}.so"
    try:
        if not target.exists():
            _build(cc, target)
        lib = ctypes.CDLL(str(target))
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("could not build the C update kernels (%s): running them as torch ops", exc)
        return None
    f32, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.rounded_linear.argtypes = [f32, f32, ctypes.c_float, ctypes.c_uint32, f32, f32, i64, f32]
    lib.pulses_linear.argtypes = [f32, f32, f32, f32, f32, f32, i64]
    lib.pulse_train.argtypes = [f32, f32, f32, ctypes.c_uint32, i64, i64]
    lib.coincidences.argtypes = [f32, f32, f32, f32, i64, i64, i64, i64]
    lib.rounded_linear.restype = lib.pulses_linear.restype = lib.pulse_train.restype = None
    lib.coincidences.restype = ctypes.c_int
    c_float = ctypes.c_float
    lib.manage.argtypes = [f32, f32, f32, f32, f32, c_float, c_float, i64]
    lib.manage.restype = None
    arrays, total = ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_double)
    for name in ("pulsed_linear", "pulsed_curve"):
        getattr(lib, name).argtypes = [f32, f32, f32, f32, i64, i64, i64, arrays, f32, f32, total]
        getattr(lib, name).restype = ctypes.c_int
    for name in ("apply_linear", "apply_curve"):
        getattr(lib, name).argtypes = [f32, f32, f32, f32, i64, arrays, f32, f32, total]
        getattr(lib, name).restype = ctypes.c_int
    lib.io_inputs.argtypes = [f32, f32, f32, i64, i64, c_float, c_float, ctypes.c_int]
    lib.io_inputs.restype = None
    lib.io_outputs.argtypes = [f32, f32, f32, i64, i64, c_float, c_float, c_float, ctypes.c_int]
    lib.io_outputs.restype = ctypes.c_int
    lib.clipped_rows.argtypes = [f32, f32, i64, i64, c_float]
    lib.clipped_rows.restype = i64
    lib.halved_rows.argtypes = [f32, f32, f32, f32, i64, i64, c_float, c_float]
    lib.replace_rows.argtypes = [f32, f32, f32, f32, i64, i64, c_float]
    lib.managed_outputs.argtypes = [f32, f32, f32, i64, i64, c_float, c_float]
    lib.halved_rows.restype = lib.replace_rows.restype = lib.managed_outputs.restype = None
    return lib


def _machine() -> str:
    """What -march=native depends on: the architecture and, on Linux, the CPU's model and
    flags (a cache shared by different machines keeps one build each)."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags")):
                cpu += line
            if line.startswith("flags"):
                break
    except OSError:
        pass
    return f"{platform.machine()} {cpu}"


def _build(cc: str, target: Path) -> None:
    """Compile SOURCE into target, atomically (a temporary file in the same folder):
    with OpenMP where the compiler has it (the kernels then share torch's libgomp and
    its threads), else single-threaded."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".so.tmp")
    os.close(fd)
    try:
        for openmp in (("-fopenmp",), ()):
            result = subprocess.run(
                [cc, *FLAGS, *openmp, "-o", tmp, str(SOURCE), "-lm"],
                capture_output=True,
                text=True,
                timeout=120,
            )
            if result.returncode == 0:
                break
        else:
            raise OSError(f"{cc} exited {result.returncode}: {result.stderr.strip()[:500]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
