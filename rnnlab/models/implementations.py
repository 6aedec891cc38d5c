"""Which implementation runs a recurrent layer, and the kernels that run it.

A layer (`layers.scan_cell`) runs a cell over its sequence under one of
these implementations, all with the same parameters and, to rounding, the
same outputs:

  scan    `nn.scan` over the cell, differentiated by XLA (`layers.py`).
          Runs every cell.
  fused   the custom-VJP kernel of `fused.py`: the input projection as one
          matmul before the loop, the weight gradients as single matmuls
          after it. Cells in the fused form (`RecurrentCell.supports_fused`).
  native  the C++ kernels of `rnnlab/native/recurrence.py` (CPU, float32):
          the division of work of "fused" with the loops split over the
          cores, built for this CPU's instruction set; "native_<isa>" names
          a variant. Cells whose own class has a kernel (`native_code`).
  cudnn   cuDNN's LSTM kernel through `jax.experimental.rnn` (CUDA GPU).
  auto    the fastest that can run the cell: the trainer times the
          candidates (`rnnlab.native.autotune`); elsewhere the fixed rule
          of `resolve_implementation`.

The rules (`implementation_for`): an implementation whose structure cannot
express the cell is refused with a one-line UserError naming those that can
(`check_runs`, `implementations_for`); one that merely cannot run here (not
float32, not on the CPU, no compiler, RNNLAB_NATIVE=0) falls back to
`cpu_fallback`'s choice, with a warning when it was asked for by name.
`run` runs a sequence under fused, native or cudnn.

Shape legend: B batch, T time, D input features, H hidden size.
"""
from __future__ import annotations

import functools

from absl import logging
import jax
import jax.numpy as jnp

from rnnlab.errors import UserError
from rnnlab.models import cells as cells_lib
from rnnlab.models import fused
from rnnlab.native import build as native_build
from rnnlab.native import recurrence
from rnnlab.registry import lookup

Array = jax.Array

# --- which implementation runs a cell ----------------------------------------

# "native" runs the native kernels' default variant for this CPU
# (native_build.default_isa(), RNNLAB_NATIVE_ISA); "native_<isa>" a named
# one (the benchmarks and tests compare them).
NATIVE_VARIANTS = tuple(f"native_{isa}" for isa in native_build.ISAS)
IMPLEMENTATIONS = ("auto", "scan", "fused", "native", *NATIVE_VARIANTS,
                   "cudnn")
# Without the native kernel (no C++ compiler), "auto" on the CPU picks
# "fused" from this hidden size up. Measured on the 2-core CPU
# (docs/benchmarks.md): at hidden 256 the per-step scan is faster (its
# small matmuls stay in cache), from 512 up the fused kernel wins (weight
# gradients as one matmul instead of T read-modify-writes of dW_hh).
# On a GPU "fused" won at every size measured (1.5-1.7x "scan" on an H100).
FUSED_FROM_HIDDEN_SIZE = 512


def resolve_implementation(implementation: str, hidden_size: int,
                           cell: cells_lib.RecurrentCell | None = None
                           ) -> str:
  """"auto"'s fixed rule (any other name is returned as it is): "fused" on
  a GPU or on several CPU devices, "native" on one, of those that `cell`
  can run when it is given ("scan" where it has no fused form,
  `cpu_fallback` where it has no native kernel). The trainer replaces
  "auto" by a measured choice before it builds the model
  (`rnnlab.native.autotune`); `implementation_for` applies the rest.
  """
  lookup({i: i for i in IMPLEMENTATIONS}, implementation,
         "recurrent implementation")
  if implementation != "auto":
    return implementation
  runnable = IMPLEMENTATIONS if cell is None else implementations_for(cell)
  # XLA's partitioner cannot split a custom call over devices: it would
  # gather the whole batch onto each one. Several CPU devices (simulated
  # or multi-process) run "fused", the XLA kernel with the same division
  # of work and layer order, so that dropout draws the same masks and a
  # run matches its one-device twin (the wavefront draws its own).
  if jax.default_backend() == "gpu" or jax.device_count() > 1:
    return "fused" if "fused" in runnable else "scan"
  return "native" if "native" in runnable else cpu_fallback(hidden_size,
                                                            cell)


def is_native(implementation: str) -> bool:
  return implementation == "native" or implementation in NATIVE_VARIANTS


def native_isa(implementation: str) -> str:
  """The instruction-set variant a native implementation runs."""
  if implementation == "native":
    return native_build.default_isa()
  return native_build.check_isa(implementation.removeprefix("native_"))


def cpu_fallback(hidden_size: int,
                 cell: cells_lib.RecurrentCell | None = None) -> str:
  """"auto"'s choice on the CPU when the native kernel is unavailable."""
  fused = cell is None or cell.supports_fused()
  return "fused" if fused and hidden_size >= FUSED_FROM_HIDDEN_SIZE else "scan"


def _kernel_code(cell) -> int | None:
  """`cell.native_code()` where it describes the cell's step: the cell has
  the fused form, and its own class declares the code (the kernels
  hard-code that class's gates; a subclass may change them)."""
  if not cell.supports_fused() or "native_code" not in vars(type(cell)):
    return None
  return cell.native_code()


def native_cell_code(cell) -> int | None:
  """The native kernels' code for a cell, or None if they do not cover it
  (not float32, no fused form, no kernel of its own class)."""
  if (jnp.dtype(cell.dtype) != jnp.float32 or
      jnp.dtype(cell.param_dtype) != jnp.float32):
    return None
  return _kernel_code(cell)


def implementations_for(cell) -> tuple[str, ...]:
  """The implementations whose structure can run `cell`, available here or
  not: "auto" and "scan" always, "fused" for the fused form
  (`supports_fused`), the native ones for a cell with a kernel of its own
  (`native_code`), "cudnn" for the LSTM (cuDNN's kernel is the LSTM's)."""
  runnable = ["auto", "scan"]
  if cell.supports_fused():
    runnable.append("fused")
  code = _kernel_code(cell)
  if code is not None:
    runnable += ["native", *NATIVE_VARIANTS]
  if code == recurrence.LSTM:
    runnable.append("cudnn")
  return tuple(runnable)


def implementation_for(cell, implementation: str, *,
                       regularized: bool = False) -> str:
  """What a layer of `cell` runs for `implementation`. All the rules:

  1. An implementation that cannot express the cell by its structure
     (`implementations_for`) is a UserError naming those that can.
  2. regularized (seq_lengths, a recurrent dropout mask or zoneout): "scan".
  3. "auto": `resolve_implementation`'s rule among those the cell can run.
  4. Native where it is unavailable here (not float32, not on the CPU, no
     compiler, RNNLAB_NATIVE=0) runs `cpu_fallback`'s choice, with a
     warning when it was asked for by name. ("cudnn" off a GPU is refused
     where it runs, `_cudnn_cell`.)
  """
  check_runs(cell, implementation)
  resolved = resolve_implementation(implementation, cell.hidden_size, cell)
  if regularized:
    return "scan"
  if is_native(resolved):
    why = _native_unavailable(cell, native_isa(resolved))
    if why:
      fallback = cpu_fallback(cell.hidden_size, cell)
      if implementation != "auto":
        _warn_fallback(resolved, why, fallback)
      return fallback
  return resolved


def check_runs(cell, implementation: str) -> None:
  """Rule 1 of `implementation_for`: a one-line UserError unless
  `implementation` can express `cell` by its structure. Models built from
  a config check it before tracing (`layers.stack_kwargs_from_config`)."""
  resolved = resolve_implementation(implementation, cell.hidden_size, cell)
  runnable = implementations_for(cell)
  if resolved in runnable:
    return
  reason = ("no fused form: its step is `recurrence`, not `gate` after "
            "one hidden matmul" if not cell.supports_fused() else
            "cuDNN runs the LSTM only" if resolved == "cudnn" else
            "no native kernel has its gates")
  raise UserError(
      f"model.implementation={implementation!r} cannot run the "
      f"{cells_lib.cell_name(cell)!r} cell ({type(cell).__name__}: "
      f"{reason}). Implementations that can: "
      f"{', '.join(map(repr, runnable))}.")


def _native_unavailable(cell, isa: str) -> str | None:
  """Why native variant `isa` cannot run `cell` here, or None."""
  if native_cell_code(cell) is None:
    return (f"{jnp.dtype(cell.dtype).name} compute, "
            f"{jnp.dtype(cell.param_dtype).name} parameters (the kernels "
            "are float32)")
  if jax.default_backend() != "cpu":
    return f"the {jax.default_backend()} backend (the kernels are CPU only)"
  return recurrence.unavailable(isa)


@functools.lru_cache(maxsize=None)
def _warn_fallback(implementation: str, why: str, fallback: str):
  """Once per process and reason."""
  logging.warning("implementation=%s cannot run here (%s); running %s.",
                  implementation, why, fallback)


# --- running a sequence under a kernel --------------------------------------

def run(cell, implementation: str, carry, xs: Array, *, unroll: int,
        reverse: bool):
  """Runs a bound `cell` over xs [B, T, D] -> (carry, ys [B, T, H]) under
  "fused", "cudnn" or a native implementation, as `implementation_for`
  resolved it (the scan paths are `layers.scan_cell`'s)."""
  if implementation == "cudnn":
    return _cudnn_cell(cell, carry, xs, reverse=reverse)
  if is_native(implementation):
    return _native_cell(cell, native_isa(implementation), carry, xs,
                        reverse=reverse)
  if implementation == "fused":
    return _fused_cell(cell, carry, xs, unroll=unroll, reverse=reverse)
  raise ValueError(f"run() takes a kernel implementation, not "
                   f"{implementation!r}.")


def _kernel_weights(cell, carry, xs):
  """A bound cell's parameters as the fused/native kernels take them."""
  if cell.is_initializing():
    cell(carry, xs[:, 0])  # creates the parameters
  params = cell.variables["params"]
  dtype = cell.dtype
  return {"w_x": params["input_proj"]["kernel"].astype(dtype),
          "b": params["input_proj"]["bias"].astype(dtype),
          "w_h": params["hidden_proj"]["kernel"].astype(dtype),
          "extras": cell.gate_extras()}


def _fused_cell(cell, carry, xs, *, unroll, reverse):
  weights = _kernel_weights(cell, carry, xs)
  xs_tm = jnp.swapaxes(xs, 0, 1).astype(cell.dtype)  # [T, B, D]
  # The gate of an unbound copy: a plain function of arrays and the cell's
  # fields, which the kernel also calls when differentiating (after the
  # module's scope has closed).
  gate = cell.clone(parent=None).gate
  carry, ys = fused.fused_scan(gate, type(cell).hidden_of, unroll, weights,
                               carry, xs_tm[::-1] if reverse else xs_tm)
  return carry, jnp.swapaxes(ys[::-1] if reverse else ys, 0, 1)


def _native_cell(cell, isa, carry, xs, *, reverse):
  # Batch-major and reversed in place: no transposes or flips around it.
  return recurrence.native_scan(native_cell_code(cell), reverse, isa,
                                _kernel_weights(cell, carry, xs), carry,
                                xs.astype(jnp.float32))


# None: jax.experimental.rnn.lstm (cuDNN). Tests set a CPU reference with the
# same signature to check the weight packing without a GPU.
CUDNN_LSTM_FN = None


def cudnn_lstm(weights: dict[str, Array], carry, xs: Array, *,
               lstm_fn=None):
  """One LSTM layer through cuDNN: xs [B, T, D] -> ((c, h), ys [B, T, H]).

  weights: our layout, w_x [D, 4H], b [4H], w_h [H, 4H], gates i, f, g, o
  (cuDNN's order too). cuDNN wants one flat vector holding W_ih [4H, D],
  W_hh [4H, H], b_ih, b_hh; we pack it on every call, so the parameters keep
  the layout of every other implementation and checkpoints move freely
  between them (the transposes are negligible next to the layer).
  Computes in float32: jax.experimental.rnn has no bf16 LSTM.
  lstm_fn: `jax.experimental.rnn.lstm` by default; tests pass the unpacked
  reference to check the packing on CPU.
  """
  from jax.experimental import rnn as jax_rnn  # only this path needs it
  lstm_fn = lstm_fn or jax_rnn.lstm
  f32 = lambda a: a.astype(jnp.float32)
  w_x, w_h, b = f32(weights["w_x"]), f32(weights["w_h"]), f32(weights["b"])
  packed = jnp.concatenate([w_x.T.ravel(), w_h.T.ravel(), b,
                            jnp.zeros_like(b)])
  c0, h0 = carry
  batch, steps = xs.shape[:2]
  ys, h_n, c_n = lstm_fn(
      f32(xs), h0[None], c0[None], packed,
      jnp.full((batch,), steps, jnp.int32), input_size=xs.shape[-1],
      hidden_size=w_h.shape[0], num_layers=1, dropout=0.0,
      bidirectional=False)
  return (c_n[0], h_n[0]), ys


def _cudnn_cell(cell, carry, xs, *, reverse):
  if CUDNN_LSTM_FN is None and jax.default_backend() != "gpu":
    raise UserError(
        f"implementation='cudnn' needs a CUDA GPU, but JAX's backend is "
        f"{jax.default_backend()!r}. Use one of 'auto', 'scan', 'fused'.")
  if cell.is_initializing():
    cell(carry, xs[:, 0])  # creates the parameters
  params = cell.variables["params"]
  weights = {"w_x": params["input_proj"]["kernel"],
             "b": params["input_proj"]["bias"],
             "w_h": params["hidden_proj"]["kernel"]}
  if reverse:
    xs = xs[:, ::-1]
  carry, ys = cudnn_lstm(weights, carry, xs, lstm_fn=CUDNN_LSTM_FN)
  return carry, (ys[:, ::-1] if reverse else ys)
