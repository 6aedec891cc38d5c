"""Compiling the native kernels: compiler, instruction-set variant, cache.

Each C/C++ source in this package is compiled on first use with the system
compiler, once per machine, into a shared library cached under
$RNNLAB_NATIVE_CACHE (default ~/.cache/rnnlab/native).

Instruction-set variants (ISAS): the kernels are written once with GCC
vector types; the variant sets the vector width and register tile that fit
the CPU's registers (vecmath.h):
  avx512   x86-64-v4: 32 registers of 64 bytes
  avx2     x86-64-v3: AVX2 + FMA, 16 registers of 32 bytes
  generic  no -march on x86-64 (SSE2), -mcpu=native elsewhere (NEON):
           16-byte vectors the compiler maps to whatever the CPU has
The best variant this CPU runs is built unless RNNLAB_NATIVE_ISA names
another (one the CPU can execute). RNNLAB_NATIVE=0 turns the kernels off.

Safety: the flags keep IEEE semantics (no -ffast-math: with GCC it sets
flush-to-zero in every thread that loads the library, and it lets the
compiler assume no NaN or Inf, which the divergence check relies on). A
cached library is loaded only from a directory owned by this user and not
writable by others; the key covers the sources, compiler and its version,
flags, ISA variant, CPU and jaxlib; a cached file that fails to load is
rebuilt once.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import pathlib
import platform
import shutil
import stat
import subprocess
import tempfile
from typing import Callable

from absl import logging

from rnnlab.data import text
from rnnlab.errors import UserError

HERE = pathlib.Path(__file__).parent
HEADERS = ("barrier.h", "vecmath.h")  # included by the sources: in each key
ISAS = ("avx512", "avx2", "generic")  # best first
# x86 CPU flags each variant needs (/proc/cpuinfo names).
ISA_CPU_FLAGS = {
    "avx512": ("avx512f", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma"),
    "avx2": ("avx2", "fma"),
    "generic": (),
}
# What the kernels need of -ffast-math, without its IEEE breaks: FMA
# contraction (ISO modes turn it off), no errno from math calls, and no
# FP traps, so that the compiler may compute both sides of a select (the
# gate loops vectorise only then). NaN, Inf and denormals keep their
# meaning, and no flush-to-zero mode is set.
BASE_FLAGS = ("-O3", "-fPIC", "-shared", "-fopenmp", "-fno-math-errno",
              "-fno-trapping-math", "-ffp-contract=fast", "-Wall", "-Wextra")


class NativeUnavailable(RuntimeError):
  """The kernel cannot be built or loaded, or does not cover this model."""


def disabled() -> str | None:
  """Why the native kernels are off (RNNLAB_NATIVE=0), else None."""
  value = os.environ.get("RNNLAB_NATIVE", "").strip().lower()
  if value in ("0", "false", "no", "off"):
    return f"RNNLAB_NATIVE={os.environ['RNNLAB_NATIVE']} turns them off"
  return None


@functools.lru_cache(maxsize=None)
def _cpu_flags() -> frozenset[str]:
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith(("flags", "Features")):
        return frozenset(line.split(":", 1)[1].split())
  except OSError:
    pass
  return frozenset()


def _is_x86() -> bool:
  return platform.machine().lower() in ("x86_64", "amd64")


def supported_isas() -> tuple[str, ...]:
  """The variants this CPU can execute, best first."""
  if not _is_x86():
    return ("generic",)
  flags = _cpu_flags()
  return tuple(isa for isa in ISAS if set(ISA_CPU_FLAGS[isa]) <= flags)


def default_isa() -> str:
  """RNNLAB_NATIVE_ISA if set (checked), else the best variant the CPU
  runs."""
  supported = supported_isas()
  wanted = os.environ.get("RNNLAB_NATIVE_ISA", "").strip().lower()
  if not wanted:
    return supported[0]
  check_isa(wanted)
  return wanted


def check_isa(isa: str) -> str:
  """Raises UserError unless `isa` is a variant this CPU can execute."""
  if isa not in ISAS:
    raise UserError(f"Unknown native ISA variant {isa!r} (RNNLAB_NATIVE_ISA "
                    f"or implementation). Valid choices: "
                    f"{', '.join(map(repr, ISAS))}.")
  supported = supported_isas()
  if isa not in supported:
    raise UserError(
        f"This CPU cannot execute the {isa!r} variant (it lacks "
        f"{', '.join(sorted(set(ISA_CPU_FLAGS[isa]) - _cpu_flags()))}). "
        f"Valid choices here: {', '.join(map(repr, supported))}.")
  return isa


def isa_flags(isa: str) -> tuple[str, ...]:
  if _is_x86():
    return {"avx512": ("-march=x86-64-v4", "-mtune=native"),
            "avx2": ("-march=x86-64-v3", "-mtune=native"),
            "generic": ("-mtune=native",)}[isa]
  return ("-mcpu=native",) if platform.machine().lower() in (
      "aarch64", "arm64") else ()


def cores() -> int:
  """The cores this process may use: its CPU affinity, capped by
  OMP_THREAD_LIMIT (a shared node's policy)."""
  try:
    count = len(os.sched_getaffinity(0))
  except AttributeError:
    count = os.cpu_count() or 1
  limit = os.environ.get("OMP_THREAD_LIMIT", "")
  if limit.isdigit() and int(limit) > 0:
    count = min(count, int(limit))
  return max(1, count)


@functools.lru_cache(maxsize=None)
def cpu_signature() -> str:
  """Machine, model name and feature flags: a library built for one CPU is
  only valid on a CPU with the same instruction sets (a shared home on a
  cluster)."""
  try:
    info = pathlib.Path("/proc/cpuinfo").read_text().splitlines()
  except OSError:
    return platform.machine() + platform.processor()
  keep = [l for l in info if l.startswith(("model name", "flags", "Features"))]
  return platform.machine() + "\n".join(sorted(set(keep)))


def cpu_model() -> str:
  for line in cpu_signature().splitlines():
    if "model name" in line:
      return line.split(":", 1)[1].strip()
  return platform.processor() or platform.machine()


def _is_private(path: pathlib.Path) -> bool:
  """Owned by this user and not writable by group or others (the library
  in it runs with this user's rights)."""
  st = path.lstat()
  return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and
          not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


@functools.lru_cache(maxsize=None)
def _private_fallback() -> pathlib.Path:
  return pathlib.Path(tempfile.mkdtemp(prefix="rnnlab-native-"))


def cache_dir() -> pathlib.Path:
  """Where libraries and `auto`'s timings are cached: $RNNLAB_NATIVE_CACHE
  or ~/.cache/rnnlab/native, if private to this user; else (and with a
  warning) a fresh private directory for this process."""
  path = pathlib.Path(os.environ.get("RNNLAB_NATIVE_CACHE") or
                      text.cache_dir() / "native")
  try:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if _is_private(path):
      return path
    reason = "it is not a directory owned by this user and closed to others"
  except OSError as e:
    reason = str(e)
  fallback = _private_fallback()
  _warn_once(f"Not using the native kernel cache {path}: {reason}. Building "
             f"into the private directory {fallback} instead.")
  return fallback


@functools.lru_cache(maxsize=None)
def _warn_once(message: str):
  logging.warning("%s", message)


def find_compiler(cxx: bool) -> str:
  if cxx:
    compiler = (os.environ.get("CXX") or shutil.which("c++") or
                shutil.which("g++"))
  else:
    compiler = (os.environ.get("CC") or shutil.which("cc") or
                shutil.which("gcc"))
  if not compiler:
    raise NativeUnavailable(
        "no C%s compiler found (looked for %s)" %
        (("++", "$CXX, c++, g++") if cxx else ("", "$CC, cc, gcc")))
  return compiler


@functools.lru_cache(maxsize=None)
def compiler_version(compiler: str) -> str:
  """The compiler's first `--version` line ("" if it does not answer)."""
  try:
    out = subprocess.run([compiler, "--version"], capture_output=True,
                         text=True, timeout=30, check=False)
  except (OSError, subprocess.TimeoutExpired):
    return ""
  return (out.stdout.splitlines() or [""])[0]


def _jaxlib_version() -> str:
  try:
    import jaxlib  # pylint: disable=g-import-not-at-top
  except ImportError:
    return ""
  return getattr(jaxlib, "__version__", "")


def compile_command(source: pathlib.Path, isa: str, target: pathlib.Path, *,
                    cxx: bool, extra_flags: tuple[str, ...] = ()
                    ) -> list[str]:
  flags = BASE_FLAGS + isa_flags(isa) + extra_flags
  return [find_compiler(cxx), *flags, "-o", str(target), str(source), "-lm"]


def library_path(source: pathlib.Path, isa: str, *, cxx: bool,
                 extra_flags: tuple[str, ...] = ()) -> pathlib.Path:
  """The cache file for this source, variant and toolchain."""
  cmd = compile_command(source, isa, pathlib.Path("out"), cxx=cxx,
                        extra_flags=extra_flags)
  digest = hashlib.sha256()
  for part in ([source.read_bytes()] +
               [(HERE / h).read_bytes() for h in HEADERS] +
               [" ".join(cmd).encode(), compiler_version(cmd[0]).encode(),
                isa.encode(), cpu_signature().encode(),
                _jaxlib_version().encode()]):
    digest.update(hashlib.sha256(part).digest())
  return cache_dir() / f"{source.stem}-{isa}-{digest.hexdigest()[:16]}.so"


def build(source: pathlib.Path, isa: str, *, cxx: bool = False,
          extra_flags: tuple[str, ...] = (), force: bool = False
          ) -> pathlib.Path:
  """Compiles `source` for variant `isa` into the cache (unless already
  there) and returns the library's path; NativeUnavailable if the compiler
  is missing or fails."""
  if disabled():
    raise NativeUnavailable(disabled())
  check_isa(isa)
  target = library_path(source, isa, cxx=cxx, extra_flags=extra_flags)
  if target.exists() and not force:
    return target
  logging.info("Compiling %s (%s, once per machine) into %s", source.name, isa,
               target)
  with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
    built = pathlib.Path(tmp) / target.name
    cmd = compile_command(source, isa, built, cxx=cxx,
                          extra_flags=extra_flags)
    try:
      proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                            check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
      raise NativeUnavailable(f"{' '.join(cmd)} failed: {e}") from e
    if proc.returncode != 0:
      raise NativeUnavailable(
          f"{' '.join(cmd)} failed:\n{proc.stderr.strip()[-2000:]}")
    os.chmod(built, 0o700)
    os.replace(built, target)  # atomic: a reader sees all or nothing
  return target


def load(source: pathlib.Path, isa: str, *, cxx: bool = False,
         extra_flags: tuple[str, ...] = (),
         check: Callable[[ctypes.CDLL], None] | None = None) -> ctypes.CDLL:
  """Builds (if needed) and loads the library. A cached file that does not
  load (truncated, wrong architecture, or `check` raises) is rebuilt once;
  if that fails too, NativeUnavailable."""
  path = build(source, isa, cxx=cxx, extra_flags=extra_flags)
  for attempt in (0, 1):
    try:
      if not _is_private(path.parent) or path.lstat().st_uid != os.getuid():
        raise OSError(f"{path} is not private to this user")
      lib = ctypes.CDLL(str(path))
      if check:
        check(lib)
      return lib
    except (OSError, AttributeError, NativeUnavailable) as e:
      if attempt:
        raise NativeUnavailable(f"{path} does not load after a rebuild: {e}"
                                ) from e
      logging.warning("The cached %s does not load (%s); rebuilding it.",
                      path, e)
      path = build(source, isa, cxx=cxx, extra_flags=extra_flags, force=True)
  raise AssertionError("unreachable")


def library_isa(lib: ctypes.CDLL) -> str:
  """The variant a loaded library was compiled as (vecmath.h)."""
  fn = lib.rnnlab_isa
  fn.restype = ctypes.c_char_p
  fn.argtypes = []
  return fn().decode()


def check_variant(isa: str) -> Callable[[ctypes.CDLL], None]:
  """A `load` check: the library's code is the `isa` variant."""
  def check(lib):
    got = library_isa(lib)
    if got != isa:
      raise NativeUnavailable(f"built as {got!r}, not {isa!r}")
  return check
