"""The native sampler: token-by-token generation from a plain recurrent LM
in one C call (`generate.c`, loaded with ctypes).

Why: at batch 1 a generated character is a chain of tiny matrix-vector
products. The jitted scan pays XLA's per-operation overhead and runs each
matvec on one core, reading every weight from L3 per character. The kernel
runs the whole loop in one call with the hidden units split over threads,
so each core keeps its share of the weights in its own L2
(docs/benchmarks.md, "Sampling throughput").

It covers the plain float32 `RecurrentLM`: Elman (tanh/relu), LSTM and
reset-after GRU cells, learned or one-hot embeddings, any number of layers
and sizes. `unsupported(model)` names what it does not cover, and
`rnnlab.sampling` then uses the jitted scan. The library is built for the
instruction-set variant `build.default_isa()` (RNNLAB_NATIVE_ISA).
"""
from __future__ import annotations

import ctypes
import dataclasses
import functools
import pathlib
from typing import Any
import weakref

from absl import logging
import jax.numpy as jnp
import numpy as np

from rnnlab.models import implementations
from rnnlab.models import lm
from rnnlab.native import build
from rnnlab.native import recurrence
from rnnlab.native.build import NativeUnavailable

SOURCE = pathlib.Path(__file__).with_name("generate.c")
CELL_CODES = recurrence.CELL_CODES

_float_p = ctypes.POINTER(ctypes.c_float)
_int_p = ctypes.POINTER(ctypes.c_int)


def library(isa: str | None = None) -> ctypes.CDLL:
  """Builds (once per machine) and loads variant `isa` (default:
  `build.default_isa()`) of the sampling kernel; NativeUnavailable if there
  is no working C compiler with OpenMP."""
  return _library(isa or build.default_isa())


def library_file(isa: str) -> pathlib.Path:
  """Where variant `isa` of the kernel is cached (built or not)."""
  return build.library_path(SOURCE, isa, cxx=False)


@functools.lru_cache(maxsize=None)
def _library(isa: str) -> ctypes.CDLL:
  lib = build.load(SOURCE, isa, cxx=False, check=build.check_variant(isa))
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


def available(isa: str | None = None) -> str | None:
  """None if the kernel loads, else why not (asked once per process and
  variant, like `recurrence.unavailable`: a failing build is not retried
  per sample)."""
  return build.disabled() or _available(isa or build.default_isa())


@functools.lru_cache(maxsize=None)
def _available(isa: str) -> str | None:
  try:
    _library(isa)
  except (NativeUnavailable, OSError) as e:
    logging.warning("The native sampler is unavailable; sampling runs the "
                    "jax scan: %s", e)
    return str(e)
  return None


def clear_caches():
  """Forgets loaded libraries and failures (tests change the compiler)."""
  _library.cache_clear()
  _available.cache_clear()


def unsupported(model) -> str | None:
  """Why `model` cannot run on the kernel, or None if it can."""
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
  cell = rnn.make_cell(parent=None)
  if implementations.native_cell_code(cell) is None:  # e.g. a subclass in CELLS
    return f"{type(cell).__name__} (only the built-in cell classes)"
  return None


@dataclasses.dataclass
class Weights:
  """A RecurrentLM's parameters laid out for the kernel (float32, C order).

  Per layer l: w_x[l] [H_{l-1}, G*H_l] (for layer 0 the table [V, G*H_0]
  of its input term per token, embed @ W_x + b), b_x[l] [G*H_l],
  w_h[l] [H_l, G*H_l], b_hn[l] [H_l]; w_out [H_last, V], b_out [V].
  The shapes are checked here: the C kernel reads them by these sizes.
  """
  cells: np.ndarray  # [L] int32 cell codes
  hidden: np.ndarray  # [L] int32
  w_x: list[np.ndarray]
  b_x: list[np.ndarray]
  w_h: list[np.ndarray]
  b_hn: list[np.ndarray]
  w_out: np.ndarray
  b_out: np.ndarray
  _plans: dict[tuple[str, int], int] = dataclasses.field(
      default_factory=dict)

  def __post_init__(self):
    vocab = len(self.b_out)
    expected = [("cells", self.cells, (len(self.hidden),), np.int32),
                ("hidden", self.hidden, (len(self.hidden),), np.int32),
                ("w_out", self.w_out, (int(self.hidden[-1]), vocab),
                 np.float32),
                ("b_out", self.b_out, (vocab,), np.float32)]
    for l, (code, size) in enumerate(zip(self.cells, self.hidden)):
      if int(code) not in recurrence.GATES:
        raise ValueError(f"Weights: layer {l}'s cell code {code} is not one "
                         f"of {sorted(recurrence.GATES)}.")
      gh = recurrence.GATES[int(code)] * int(size)
      fan_in = vocab if l == 0 else int(self.hidden[l - 1])
      expected += [(f"w_x[{l}]", self.w_x[l], (fan_in, gh), np.float32),
                   (f"b_x[{l}]", self.b_x[l], (gh,), np.float32),
                   (f"w_h[{l}]", self.w_h[l], (int(size), gh), np.float32),
                   (f"b_hn[{l}]", self.b_hn[l], (int(size),), np.float32)]
    lists = (self.w_x, self.b_x, self.w_h, self.b_hn)
    if any(len(a) != len(self.hidden) for a in lists):
      raise ValueError(f"Weights: {len(self.hidden)} layers, but "
                       f"{[len(a) for a in lists]} w_x, b_x, w_h, b_hn.")
    for name, array, shape, dtype in expected:
      _check_array(f"Weights.{name}", array, shape, dtype)

  @classmethod
  def from_model(cls, model, params, table) -> "Weights":
    """table: `model.input_table()`, layer 0's input term per token."""
    reason = unsupported(model)
    if reason:
      raise NativeUnavailable(f"the native sampler does not cover {reason}")
    f32 = lambda a: np.ascontiguousarray(np.asarray(a, np.float32))
    rnn = model.rnn
    sizes = rnn.layer_sizes()
    w_x, b_x, w_h, b_hn = [], [], [], []
    for l, size in enumerate(sizes):
      p = params["rnn"][f"layers_{l}"]
      w_x.append(f32(table if l == 0 else p["input_proj"]["kernel"]))
      b_x.append(f32(p["input_proj"]["bias"]))
      w_h.append(f32(p["hidden_proj"]["kernel"]))
      b_hn.append(f32(p.get("hidden_candidate_bias", np.zeros(size))))
    code = implementations.native_cell_code(rnn.make_cell(parent=None))
    return cls(cells=np.full(len(sizes), code, np.int32),
               hidden=np.asarray(sizes, np.int32), w_x=w_x, b_x=b_x, w_h=w_h,
               b_hn=b_hn, w_out=f32(params["readout"]["kernel"]),
               b_out=f32(params["readout"]["bias"]))


def _plan(weights: Weights, threads: int, isa: str) -> int:
  """The kernel's packed layout of `weights` for `threads` threads (built
  once per variant: packing costs about as much as 50 characters)."""
  key = (isa, threads)
  if key not in weights._plans:  # pylint: disable=protected-access
    lib = _library(isa)
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
          f"rnnlab_plan failed for {threads} threads (out of memory, sizes "
          "that overflow an int, or OpenMP gave fewer threads)")
    # The plan points into the arrays: free it before they can go.
    weakref.finalize(weights, lib.rnnlab_plan_free, plan)
    weights._plans[key] = plan  # pylint: disable=protected-access
  return weights._plans[key]  # pylint: disable=protected-access


def default_threads(weights: Weights) -> int:
  """One thread per core, but at least 64 hidden units each: below that the
  barriers cost more than the split saves."""
  return max(1, min(build.cores(), int(weights.hidden.min()) // 64))


def _pointers(arrays) -> Any:
  return (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])


def generate(weights: Weights, carries, logits0: np.ndarray,
             gumbel: np.ndarray, *, temperature: float, top_k: int,
             threads: int | None = None, isa: str | None = None):
  """Draws `length` tokens per row, as `rnnlab.sampling.generate` does.

  carries: the stack's carries after the prime (per layer: h, or (c, h) for
  the LSTM), [B, H] each; logits0 [B, V]: the prime's last logits;
  gumbel [length, B, V]: the Gumbel noise of each draw.
  isa: the kernel's variant (default: `build.default_isa()`).
  Returns (tokens [B, length] int32, logits [B, length, V]).
  """
  isa = isa or build.default_isa()
  vocab = len(weights.b_out)
  if np.ndim(gumbel) != 3:
    raise ValueError(f"generate: gumbel has shape {np.shape(gumbel)}, "
                     f"expected [length, B, {vocab}].")
  length, batch = np.shape(gumbel)[:2]
  _check_array("generate: gumbel", gumbel, (length, batch, vocab),
               np.float32)
  _check_array("generate: logits0", logits0, (batch, vocab), np.float32)
  if len(carries) != len(weights.hidden):
    raise ValueError(f"generate: {len(carries)} carries for "
                     f"{len(weights.hidden)} layers.")
  lstm = [code == CELL_CODES[("lstm", None)] for code in weights.cells]
  for l, (carry, is_lstm) in enumerate(zip(carries, lstm)):
    for part in (carry if is_lstm else (carry,)):
      _check_array(f"generate: layer {l}'s carry", part,
                   (batch, int(weights.hidden[l])), np.float32)
  plan = _plan(weights, int(threads or default_threads(weights)), isa)
  h = [np.array(c[1] if is_lstm else c, np.float32, order="C")
       for c, is_lstm in zip(carries, lstm)]
  c = [np.array(cr[0], np.float32, order="C") if is_lstm else hh
       for cr, hh, is_lstm in zip(carries, h, lstm)]
  logits0 = np.ascontiguousarray(logits0, np.float32)
  gumbel = np.ascontiguousarray(gumbel, np.float32)
  tokens = np.empty((length, batch), np.int32)
  logits = np.empty((length, batch, vocab), np.float32)
  status = _library(isa).rnnlab_generate(
      plan, _pointers(h), _pointers(c), logits0.ctypes.data_as(_float_p),
      gumbel.ctypes.data_as(_float_p), float(temperature), int(top_k), batch,
      length, tokens.ctypes.data_as(_int_p), logits.ctypes.data_as(_float_p))
  if status != 0:
    raise NativeUnavailable(f"rnnlab_generate failed (status {status}: "
                            "1 = bad argument, 2 = out of memory or threads)")
  return tokens.T, logits.transpose(1, 0, 2)


def _check_array(name: str, array, shape: tuple[int, ...], dtype) -> None:
  """ValueError unless `array` has exactly this shape and dtype: the kernel
  reads raw memory by the sizes it is given."""
  if tuple(np.shape(array)) != tuple(shape):
    raise ValueError(f"{name} has shape {tuple(np.shape(array))}, expected "
                     f"{tuple(shape)}.")
  got = np.dtype(getattr(array, "dtype", np.asarray(array).dtype))
  if got != np.dtype(dtype):
    raise ValueError(f"{name} is {got.name}, expected {np.dtype(dtype).name}"
                     ".")
