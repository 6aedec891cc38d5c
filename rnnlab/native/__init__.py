"""CPU kernels in C/C++, built on first use with the system compiler.

  generate.c      token-by-token generation (this module, via ctypes)
  recurrence.cc   a layer's training loops as XLA FFI custom calls
                  (`rnnlab.native.recurrence`, implementation="native")

`build` compiles a source once per machine; the rest of this module is the
sampler. Why a sampler kernel: at batch 1 a generated character is a chain
of tiny matrix-vector products. The jitted scan pays XLA's per-operation
overhead and runs each matvec on one core, reading every weight from L3 per
character. The kernel runs the whole loop in one call with the hidden units
split over threads, so each core keeps its share of the weights in its own
L2 (docs/benchmarks.md, "Sampling throughput").

It covers the plain float32 `RecurrentLM`: Elman (tanh/relu), LSTM and
reset-after GRU cells, learned or one-hot embeddings, any number of layers
and sizes. `unsupported(model)` names what it does not cover, and
`rnnlab.sample` then uses the jitted scan.

Each shared library is cached under $RNNLAB_NATIVE_CACHE (default
~/.cache/rnnlab/native), keyed by the source, the compiler flags and the
CPU's model and flags (it is built with -march=native), and written
atomically so that concurrent first uses do not clash.
"""
from __future__ import annotations

import ctypes
import dataclasses
import functools
import hashlib
import os
import pathlib
import platform
import shutil
import subprocess
import tempfile
from typing import Any
import weakref

from absl import logging
import numpy as np

SOURCE = pathlib.Path(__file__).with_name("generate.c")
FLAGS = ("-O3", "-march=native", "-ffast-math", "-fopenmp", "-fPIC",
         "-shared")
CELL_CODES = {("rnn", "tanh"): 0, ("rnn", "relu"): 1, ("lstm", None): 2,
              ("gru", None): 3}

_float_p = ctypes.POINTER(ctypes.c_float)
_int_p = ctypes.POINTER(ctypes.c_int)


class NativeUnavailable(RuntimeError):
  """The kernel cannot be built or does not cover this model."""


def cache_dir() -> pathlib.Path:
  from rnnlab.data import text  # pylint: disable=g-import-not-at-top
  return pathlib.Path(os.environ.get("RNNLAB_NATIVE_CACHE") or
                      text.cache_dir() / "native")


def _cpu_signature() -> str:
  """Model name and feature flags: a -march=native build is only valid on a
  CPU with the same instruction sets (a shared home on a cluster)."""
  try:
    info = pathlib.Path("/proc/cpuinfo").read_text().splitlines()
  except OSError:
    return platform.machine() + platform.processor()
  keep = [l for l in info if l.startswith(("model name", "flags", "Features"))]
  return platform.machine() + "\n".join(sorted(set(keep)))


def build(source: pathlib.Path, *, cxx: bool = False,
          extra_flags: tuple[str, ...] = ()) -> pathlib.Path:
  """Compiles `source` into a cached shared library (once per machine) and
  returns its path; NativeUnavailable if the compiler is missing or fails."""
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
  flags = FLAGS + extra_flags
  key = hashlib.sha256(
      source.read_bytes() + " ".join((compiler,) + flags).encode() +
      _cpu_signature().encode()).hexdigest()[:16]
  target = cache_dir() / f"{source.stem}-{key}.so"
  if not target.exists():
    logging.info("Compiling %s (once per machine) into %s", source.name,
                 target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
      built = pathlib.Path(tmp) / target.name
      cmd = [compiler, *flags, "-o", str(built), str(source), "-lm"]
      try:
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=300, check=False)
      except (OSError, subprocess.TimeoutExpired) as e:
        raise NativeUnavailable(f"{' '.join(cmd)} failed: {e}") from e
      if proc.returncode != 0:
        raise NativeUnavailable(
            f"{' '.join(cmd)} failed:\n{proc.stderr.strip()[-2000:]}")
      os.replace(built, target)  # atomic: a reader sees all or nothing
  return target


@functools.lru_cache(maxsize=None)
def library() -> ctypes.CDLL:
  """Builds (once per machine) and loads the sampling kernel;
  NativeUnavailable if there is no working C compiler with OpenMP."""
  target = build(SOURCE)
  lib = ctypes.CDLL(str(target))
  ptrs = ctypes.POINTER(ctypes.c_void_p)
  lib.rnnlab_plan.restype = ctypes.c_void_p
  lib.rnnlab_plan.argtypes = [
      ctypes.c_int, _int_p, _int_p, ptrs, ptrs, ptrs, ptrs, _float_p,
      _float_p, ctypes.c_int, ctypes.c_int]
  lib.rnnlab_plan_free.restype = None
  lib.rnnlab_plan_free.argtypes = [ctypes.c_void_p]
  lib.rnnlab_generate.restype = ctypes.c_int
  lib.rnnlab_generate.argtypes = [
      ctypes.c_void_p, ptrs, ptrs, _float_p, _float_p, ctypes.c_float,
      ctypes.c_int, ctypes.c_int, ctypes.c_int, _int_p, _float_p]
  return lib


@functools.lru_cache(maxsize=None)
def available() -> str | None:
  """None if the kernel loads, else why not (asked once per process, like
  `recurrence.unavailable`: a failing build is not retried per sample)."""
  try:
    library()
  except (NativeUnavailable, OSError) as e:
    logging.warning("The native sampler is unavailable; sampling runs the "
                    "jax scan: %s", e)
    return str(e)
  return None


def unsupported(model) -> str | None:
  """Why `model` cannot run on the kernel, or None if it can."""
  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp
  from rnnlab.models import lm
  if type(model) is not lm.RecurrentLM:  # pylint: disable=unidiomatic-typecheck
    return f"{type(model).__name__} (only the plain RecurrentLM)"
  rnn = model.rnn
  if rnn.bidirectional or rnn.residual or rnn.layer_norm or rnn.zoneout_rate:
    return "bidirectional, residual, layer-norm or zoneout stacks"
  if jnp.dtype(rnn.dtype) != jnp.float32 or jnp.dtype(
      rnn.param_dtype) != jnp.float32:
    return f"dtype {jnp.dtype(rnn.dtype).name} (float32 only)"
  options = rnn.cell_options or {}
  if rnn.cell == "gru" and not options.get("reset_after", True):
    return "the reset-before GRU"
  if _cell_code(rnn.cell, options) is None:
    return f"cell {rnn.cell!r}"
  # pylint: disable-next=g-import-not-at-top (recurrence imports this module)
  from rnnlab.native import recurrence
  cell = rnn.make_cell(parent=None)
  if recurrence.cell_code(cell) is None:  # e.g. a subclass in CELLS
    return f"{type(cell).__name__} (only the built-in cell classes)"
  return None


def _cell_code(cell: str, options) -> int | None:
  activation = options.get("activation", "tanh") if cell == "rnn" else None
  return CELL_CODES.get((cell, activation))


@dataclasses.dataclass
class Weights:
  """A RecurrentLM's parameters laid out for the kernel (float32, C order).

  tables[0]: layer 0's input term for each token, embed @ W_x + b [V, G*H].
  """
  cells: np.ndarray  # [L] int32 cell codes
  hidden: np.ndarray  # [L] int32
  w_x: list[np.ndarray]
  b_x: list[np.ndarray]
  w_h: list[np.ndarray]
  b_hn: list[np.ndarray]
  w_out: np.ndarray
  b_out: np.ndarray
  _plans: dict[int, int] = dataclasses.field(default_factory=dict)

  @classmethod
  def from_model(cls, model, params, table) -> "Weights":
    """table: `model.input_table()`, layer 0's input term per token."""
    reason = unsupported(model)
    if reason:
      raise NativeUnavailable(f"the native sampler does not cover {reason}")
    f32 = lambda a: np.ascontiguousarray(np.asarray(a, np.float32))
    rnn = model.rnn
    options = rnn.cell_options or {}
    sizes = rnn.layer_sizes()
    w_x, b_x, w_h, b_hn = [], [], [], []
    for l, size in enumerate(sizes):
      p = params["rnn"][f"layers_{l}"]
      w_x.append(f32(table if l == 0 else p["input_proj"]["kernel"]))
      b_x.append(f32(p["input_proj"]["bias"]))
      w_h.append(f32(p["hidden_proj"]["kernel"]))
      b_hn.append(f32(p.get("hidden_candidate_bias", np.zeros(size))))
    code = _cell_code(rnn.cell, options)
    return cls(cells=np.full(len(sizes), code, np.int32),
               hidden=np.asarray(sizes, np.int32), w_x=w_x, b_x=b_x, w_h=w_h,
               b_hn=b_hn, w_out=f32(params["readout"]["kernel"]),
               b_out=f32(params["readout"]["bias"]))


def _plan(weights: Weights, threads: int) -> int:
  """The kernel's packed layout of `weights` for `threads` threads (built
  once: packing costs about as much as 50 characters)."""
  if threads not in weights._plans:  # pylint: disable=protected-access
    lib = library()
    as_i = lambda a: a.ctypes.data_as(_int_p)
    as_f = lambda a: a.ctypes.data_as(_float_p)
    plan = lib.rnnlab_plan(
        len(weights.cells), as_i(weights.cells), as_i(weights.hidden),
        _pointers(weights.w_x), _pointers(weights.b_x),
        _pointers(weights.w_h), _pointers(weights.b_hn),
        as_f(weights.w_out), as_f(weights.b_out), len(weights.b_out),
        threads)
    if not plan:
      raise NativeUnavailable(
          f"rnnlab_plan failed for {threads} threads (out of memory, or "
          "OpenMP gave fewer threads)")
    # The plan points into the arrays: free it before they can go.
    weakref.finalize(weights, lib.rnnlab_plan_free, plan)
    weights._plans[threads] = plan  # pylint: disable=protected-access
  return weights._plans[threads]  # pylint: disable=protected-access


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


def default_threads(weights: Weights) -> int:
  """One thread per core, but at least 64 hidden units each: below that the
  barriers cost more than the split saves."""
  return max(1, min(cores(), int(weights.hidden.min()) // 64))


def _pointers(arrays) -> Any:
  return (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])


def generate(weights: Weights, carries, logits0: np.ndarray,
             gumbel: np.ndarray, *, temperature: float, top_k: int,
             threads: int | None = None):
  """Draws `length` tokens per row, as `rnnlab.sample.generate` does.

  carries: the stack's carries after the prime (per layer: h, or (c, h) for
  the LSTM), [B, H] each; logits0 [B, V]: the prime's last logits;
  gumbel [length, B, V]: the Gumbel noise of each draw.
  Returns (tokens [B, length] int32, logits [B, length, V]).
  """
  length, batch, vocab = gumbel.shape
  if vocab != len(weights.b_out) or logits0.shape != (batch, vocab):
    raise ValueError(f"gumbel {gumbel.shape} and logits0 {logits0.shape} "
                     f"must be [length, B, {len(weights.b_out)}] and [B, "
                     f"{len(weights.b_out)}]")
  plan = _plan(weights, int(threads or default_threads(weights)))
  lstm = [code == CELL_CODES[("lstm", None)] for code in weights.cells]
  h = [np.array(c[1] if is_lstm else c, np.float32, order="C")
       for c, is_lstm in zip(carries, lstm)]
  c = [np.array(cr[0], np.float32, order="C") if is_lstm else hh
       for cr, hh, is_lstm in zip(carries, h, lstm)]
  logits0 = np.ascontiguousarray(logits0, np.float32)
  gumbel = np.ascontiguousarray(gumbel, np.float32)
  tokens = np.empty((length, batch), np.int32)
  logits = np.empty((length, batch, vocab), np.float32)
  status = library().rnnlab_generate(
      plan, _pointers(h), _pointers(c), logits0.ctypes.data_as(_float_p),
      gumbel.ctypes.data_as(_float_p), float(temperature), int(top_k), batch,
      length, tokens.ctypes.data_as(_int_p), logits.ctypes.data_as(_float_p))
  if status != 0:
    raise NativeUnavailable(f"rnnlab_generate failed (status {status}: "
                            "1 = bad argument, 2 = out of memory or threads)")
  return tokens.T, logits.transpose(1, 0, 2)
