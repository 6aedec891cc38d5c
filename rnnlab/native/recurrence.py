"""implementation="native": a recurrent layer's time loops, forward and
backward, as XLA FFI custom calls on the CPU (`recurrence.cc`).

Shape legend: B batch, T time, D input features, H hidden, G gates.

The division of work is that of the "fused" kernel (`models/fused.py`):
XLA computes the input projection XP = X W_x before the loop and the
weight gradients after it, as single large matmuls; only the recurrent
matmul and the gates run step by step, here in C++ with the hidden units
split over the cores and each core's share of W_h kept in its L2.

Covers float32 Elman (tanh/relu), LSTM and reset-after GRU cells; the
numerical tests check it against the nn.scan path to 1e-5.
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

from rnnlab import native

SOURCE = pathlib.Path(__file__).with_name("recurrence.cc")
LSTM, GRU = native.CELL_CODES[("lstm", None)], native.CELL_CODES[("gru", None)]
Array = jax.Array


@functools.lru_cache(maxsize=None)
def register() -> ctypes.CDLL:
  """Builds the kernels (once per machine) and registers them with XLA;
  NativeUnavailable without a working C++ compiler."""
  path = native.build(SOURCE, cxx=True, extra_flags=(
      "-std=c++17", "-w", f"-I{jax.ffi.include_dir()}"))
  lib = ctypes.CDLL(str(path))
  for name, fn in (("rnnlab_recurrence_fwd", lib.RnnlabRecurrenceFwd),
                   ("rnnlab_recurrence_bwd", lib.RnnlabRecurrenceBwd)):
    jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(fn), platform="cpu")
  return lib  # cached: keeps the library loaded


@functools.lru_cache(maxsize=None)
def unavailable() -> str | None:
  """None once the kernels are registered, else why not (asked once per
  process: a failing compiler is not retried at every layer)."""
  try:
    register()
  except (native.NativeUnavailable, OSError) as e:
    logging.warning("implementation=native is unavailable, running the XLA "
                    "kernels instead: %s", e)
    return str(e)
  return None


def cell_code(cell) -> int | None:
  """The kernel's code for a bound cell, or None where it does not apply."""
  # pylint: disable=g-import-not-at-top
  from rnnlab.models import cells as cells_lib
  if (jnp.dtype(cell.dtype) != jnp.float32 or
      jnp.dtype(cell.param_dtype) != jnp.float32):
    return None
  # Exact types: a subclass may change the gates the kernels hard-code.
  kind = type(cell)
  if kind is cells_lib.ElmanCell:
    return native.CELL_CODES.get(("rnn", cell.activation))
  if kind is cells_lib.LSTMCell:
    return LSTM
  if kind is cells_lib.GRUCell and cell.reset_after:
    return GRU
  return None


def _split_carry(cell: int, carry):
  """-> (h [B, H], c [B, H]); c is zeros except for the LSTM's (c, h)."""
  if cell == LSTM:
    return carry[1], carry[0]
  return carry, jnp.zeros_like(carry)


def _flat(a: Array) -> Array:
  return a.reshape(-1, a.shape[-1])


def _forward(cell: int, reverse: bool, weights, carry0, xs):
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
      "rnnlab_recurrence_fwd",
      (out((batch, steps, hidden), jnp.float32),
       out((batch, steps, hidden), jnp.float32),
       out((batch, steps, gh), jnp.float32)),
      vmap_method="sequential")(
          xp, weights["b"], w_h, h0, c0, b_hn, cell=np.int32(cell),
          reverse=np.int32(reverse), threads=np.int32(native.cores()))
  last = 0 if reverse else -1
  carry = (aux[:, last], hs[:, last]) if cell == LSTM else hs[:, last]
  return carry, hs, (h0, c0, hs, aux, acts)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def native_scan(cell: int, reverse: bool, weights: dict[str, Any],
                carry0: Any, xs: Array):
  """Runs cell `cell` (a CELL_CODES value) over xs [B, T, D] (batch-major;
  reverse=True: from the last step to the first) -> (carry, ys [B, T, H]).

  weights: {"w_x": [D, G*H], "b": [G*H], "w_h": [H, G*H],
            "extras": {} or, for the GRU, {"hidden_candidate_bias": [H]}}.
  """
  carry, ys, _ = _forward(cell, reverse, weights, carry0, xs)
  return carry, ys


def _native_fwd(cell, reverse, weights, carry0, xs):
  carry, ys, residuals = _forward(cell, reverse, weights, carry0, xs)
  return (carry, ys), (weights, xs, residuals)


def _native_bwd(cell, reverse, saved, cotangents):
  weights, xs, (h0, c0, hs, aux, acts) = saved
  d_carry, d_ys = cotangents
  d_ht, d_ct = _split_carry(cell, d_carry)
  batch, steps, hidden = hs.shape
  gh = weights["w_h"].shape[1]
  out = jax.ShapeDtypeStruct
  d_xp, d_hp, d_h0, d_c0, d_bhn = jax.ffi.ffi_call(
      "rnnlab_recurrence_bwd",
      (out((batch, steps, gh), jnp.float32),
       out((batch, steps, gh) if cell == GRU else (1,), jnp.float32),
       out((batch, hidden), jnp.float32),
       out((batch, hidden), jnp.float32),
       out((hidden,), jnp.float32)),
      vmap_method="sequential")(
          weights["w_h"], h0, c0, hs, aux, acts, d_ys, d_ht, d_ct,
          cell=np.int32(cell), reverse=np.int32(reverse),
          threads=np.int32(native.cores()))
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
