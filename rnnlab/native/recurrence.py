"""implementation="native": a recurrent layer's time loops, forward and
backward, as XLA FFI custom calls on the CPU (`recurrence.cc`).

Shape legend: B batch, T time, D input features, H hidden, G gates.

The division of work is that of the "fused" kernel (`models/fused.py`):
XLA computes the input projection XP = X W_x before the loop and the
weight gradients after it, as single large matmuls; only the recurrent
matmul and the gates run step by step, here in C++ with the hidden units
split over the cores and each core's share of W_h kept in its L2.

Covers float32 Elman (tanh/relu), LSTM and reset-after GRU cells; the
numerical tests check it against the nn.scan path to float32 tolerance.
Each instruction-set variant (`build.ISAS`) is its own library, registered
under its own target names, so that one process can run several (the
benchmarks and tests compare them).
"""
from __future__ import annotations

import ctypes
import functools
import pathlib
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.errors import UserError
from rnnlab.native import build

SOURCE = pathlib.Path(__file__).with_name("recurrence.cc")
# The kernels' cell codes (recurrence.cc's Cell enum).
CELL_CODES = {("rnn", "tanh"): 0, ("rnn", "relu"): 1, ("lstm", None): 2,
              ("gru", None): 3}
LSTM, GRU = CELL_CODES[("lstm", None)], CELL_CODES[("gru", None)]
GATES = {0: 1, 1: 1, LSTM: 4, GRU: 3}
Array = jax.Array


# Beside build.BASE_FLAGS: XLA's FFI headers as system headers (their own
# warnings are not ours to fix).
CXX_FLAGS = ("-std=c++17", "-isystem", jax.ffi.include_dir())


def _target(isa: str, direction: str) -> str:
  return f"rnnlab_recurrence_{direction}_{isa}"


def clear_caches():
  """Forgets loaded libraries and failures (tests change the compiler)."""
  register.cache_clear()
  _unavailable.cache_clear()


# The library whose handlers XLA holds, per variant: XLA refuses a second
# registration of a name, so a rebuilt library (tests) reuses the first.
_REGISTERED: dict[str, ctypes.CDLL] = {}


def library_file(isa: str) -> pathlib.Path:
  """Where variant `isa` of the kernels is cached (built or not)."""
  return build.library_path(SOURCE, isa, cxx=True, extra_flags=CXX_FLAGS)


@functools.lru_cache(maxsize=None)
def register(isa: str) -> ctypes.CDLL:
  """Builds variant `isa` of the kernels (once per machine) and registers
  them with XLA; NativeUnavailable without a working C++ compiler."""
  lib = build.load(SOURCE, isa, cxx=True, extra_flags=CXX_FLAGS,
                   check=build.check_variant(isa))
  if isa not in _REGISTERED:
    for direction, fn in (("fwd", lib.RnnlabRecurrenceFwd),
                          ("bwd", lib.RnnlabRecurrenceBwd)):
      jax.ffi.register_ffi_target(_target(isa, direction),
                                  jax.ffi.pycapsule(fn), platform="cpu")
    _REGISTERED[isa] = lib  # kept loaded for the process
  return lib


def unavailable(isa: str | None = None) -> str | None:
  """None once variant `isa` (default: `build.default_isa()`) is
  registered, else why not (RNNLAB_NATIVE=0, or a build that failed: asked
  once per process, not retried at every layer)."""
  return build.disabled() or _unavailable(isa or build.default_isa())


@functools.lru_cache(maxsize=None)
def _unavailable(isa: str) -> str | None:
  try:
    register(isa)
  except (build.NativeUnavailable, OSError) as e:
    logging.warning("implementation=native is unavailable, running the XLA "
                    "kernels instead: %s", e)
    return str(e)
  return None


def _split_carry(cell: int, carry):
  """-> (h [B, H], c [B, H]); c is zeros except for the LSTM's (c, h)."""
  if cell == LSTM:
    return carry[1], carry[0]
  return carry, jnp.zeros_like(carry)


def _flat(a: Array) -> Array:
  return a.reshape(-1, a.shape[-1])


def check_inputs(cell: int, weights: dict[str, Any], carry0: Any, xs: Array):
  """Raises UserError unless the kernel's inputs fit together: float32,
  xs [B, T, D], w_x [D, G*H], b [G*H], w_h [H, G*H], the carry [B, H] (the
  LSTM's a (c, h) pair). The C++ entries check again before touching
  memory; this names the mismatch in the model's terms."""
  if cell not in GATES:
    raise UserError(f"Unknown native cell code {cell!r}. Valid choices: "
                    f"{sorted(GATES)}.")
  if xs.ndim != 3:
    raise UserError(f"native_scan: xs has shape {xs.shape}, expected "
                    f"[B, T, D].")
  batch, _, features = xs.shape
  hidden = weights["w_h"].shape[0]
  gh = GATES[cell] * hidden
  carries = carry0 if cell == LSTM else (carry0,)
  if cell == LSTM and not (isinstance(carry0, (tuple, list)) and
                           len(carry0) == 2):
    raise UserError("native_scan: the LSTM carry must be a (c, h) pair.")
  expected = [("xs", xs, (batch, xs.shape[1], features)),
              ("w_x", weights["w_x"], (features, gh)),
              ("b", weights["b"], (gh,)),
              ("w_h", weights["w_h"], (hidden, gh))]
  expected += [("carry", c, (batch, hidden)) for c in carries]
  if cell == GRU:
    expected.append(("hidden_candidate_bias",
                     weights["extras"]["hidden_candidate_bias"], (hidden,)))
  if batch * xs.shape[1] * gh >= 2**31 or hidden * gh >= 2**31:
    raise UserError(
        f"native_scan: {batch} x {xs.shape[1]} steps x {gh} gate units "
        f"would overflow a 32-bit int in the kernels' offsets; use "
        f"implementation='fused' for sizes this large.")
  for name, array, shape in expected:
    if tuple(array.shape) != shape:
      raise UserError(
          f"native_scan: {name} has shape {tuple(array.shape)}, expected "
          f"{shape} (batch {batch}, {features} input features, hidden "
          f"{hidden}, {GATES[cell]} gates).")
    if jnp.dtype(array.dtype) != jnp.float32:
      raise UserError(f"native_scan: {name} is {jnp.dtype(array.dtype).name}"
                      f"; the native kernels take float32 only.")


def _forward(cell: int, reverse: bool, isa: str, weights, carry0, xs):
  check_inputs(cell, weights, carry0, xs)
  batch, steps = xs.shape[:2]
  w_h = weights["w_h"]
  hidden, gh = w_h.shape
  # The bias is added inside the kernel: a separate XLA pass over xp cost
  # ~7% of an LSTM step.
  xp = (_flat(xs) @ weights["w_x"]).reshape(batch, steps, gh)
  h0, c0 = _split_carry(cell, carry0)
  b_hn = weights["extras"].get("hidden_candidate_bias",
                               jnp.zeros((hidden,), jnp.float32))
  out = jax.ShapeDtypeStruct
  hs, aux, acts = jax.ffi.ffi_call(
      _target(isa, "fwd"),
      (out((batch, steps, hidden), jnp.float32),
       out((batch, steps, hidden), jnp.float32),
       out((batch, steps, gh), jnp.float32)),
      vmap_method="sequential")(
          xp, weights["b"], w_h, h0, c0, b_hn, cell=np.int32(cell),
          reverse=np.int32(reverse), threads=np.int32(build.cores()))
  last = 0 if reverse else -1
  carry = (aux[:, last], hs[:, last]) if cell == LSTM else hs[:, last]
  return carry, hs, (h0, c0, hs, aux, acts)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def native_scan(cell: int, reverse: bool, isa: str, weights: dict[str, Any],
                carry0: Any, xs: Array):
  """Runs cell `cell` (a CELL_CODES value) over xs [B, T, D] (batch-major;
  reverse=True: from the last step to the first) -> (carry, ys [B, T, H]),
  on the kernels of variant `isa` (registered with `register(isa)`).

  weights: {"w_x": [D, G*H], "b": [G*H], "w_h": [H, G*H],
            "extras": {} or, for the GRU, {"hidden_candidate_bias": [H]}}.
  carry0: [B, H], or the LSTM's (c, h). All float32 (`check_inputs`).
  """
  carry, ys, _ = _forward(cell, reverse, isa, weights, carry0, xs)
  return carry, ys


def _native_fwd(cell, reverse, isa, weights, carry0, xs):
  carry, ys, residuals = _forward(cell, reverse, isa, weights, carry0, xs)
  return (carry, ys), (weights, xs, residuals)


def _native_bwd(cell, reverse, isa, saved, cotangents):
  weights, xs, (h0, c0, hs, aux, acts) = saved
  d_carry, d_ys = cotangents
  d_ht, d_ct = _split_carry(cell, d_carry)
  batch, steps, hidden = hs.shape
  gh = weights["w_h"].shape[1]
  out = jax.ShapeDtypeStruct
  d_xp, d_hp, d_h0, d_c0, d_bhn = jax.ffi.ffi_call(
      _target(isa, "bwd"),
      (out((batch, steps, gh), jnp.float32),
       out((batch, steps, gh) if cell == GRU else (1,), jnp.float32),
       out((batch, hidden), jnp.float32),
       out((batch, hidden), jnp.float32),
       out((hidden,), jnp.float32)),
      vmap_method="sequential")(
          weights["w_h"], h0, c0, hs, aux, acts, d_ys, d_ht, d_ct,
          cell=np.int32(cell), reverse=np.int32(reverse),
          threads=np.int32(build.cores()))
  if cell != GRU:
    d_hp = d_xp  # the input and hidden terms enter the gates alike
  # The state each step started from, aligned with d_hp.
  if reverse:
    h_prev = jnp.concatenate([hs[:, 1:], h0[:, None]], axis=1)
  else:
    h_prev = jnp.concatenate([h0[:, None], hs[:, :-1]], axis=1)
  d_weights = {
      "w_x": _flat(xs).T @ _flat(d_xp),
      "b": jnp.sum(_flat(d_xp), axis=0),
      "w_h": _flat(h_prev).T @ _flat(d_hp),
      "extras": ({"hidden_candidate_bias": d_bhn} if cell == GRU else {}),
  }
  d_xs = (_flat(d_xp) @ weights["w_x"].T).reshape(xs.shape)
  d_carry0 = (d_c0, d_h0) if cell == LSTM else d_h0
  return d_weights, d_carry0, d_xs


native_scan.defvjp(_native_fwd, _native_bwd)
