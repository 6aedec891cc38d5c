"""A recurrent layer as one custom-VJP kernel (the "fused" implementation).

Shape legend: T time, B batch, D input features, H hidden, G gates.

XLA's autodiff of a scan accumulates the weight gradients inside the reverse
loop: every step adds a [H, G*H] outer product into dW_hh, so the whole
[H, G*H] matrix is read and written T times. At hidden 1024 that is 16 MB
per step and the step becomes memory-bound. This kernel instead

  forward:  XP = X W_x + b as one [T*B, D] x [D, G*H] matmul, then a loop
            with only the recurrent matmul hp = h W_hh and the elementwise
            gate; it saves hp and the previous carries;
  backward: a reverse loop with only the elementwise gate's VJP and
            dh_{t-1} += dhp W_hh^T; the weight gradients come after the
            loop as single large matmuls: dW_hh = H_prev^T dHP,
            dW_x = X^T dXP, db = sum dXP, dX = dXP W_x^T.

Both loops prefetch the next step's slices into the loop carry: when XLA
fuses a dynamic-slice of a [T, B, G*H] array into the elementwise gate, the
fusion runs about 3x slower on CPU than on a plain [B, G*H] buffer.

Works for any cell in the fused form, whose step is its elementwise
`gate(carry, xp, hidden_of(carry) @ W_hh, extras)` (`cells.RecurrentCell`,
`supports_fused`); the numerical tests check it against the nn.scan path
to 1e-5.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def _matmul(x: Array, w: Array) -> Array:
  """[..., K] x [K, N] as one 2-D matmul (XLA's fastest CPU path)."""
  return (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[-1])


def _at(xs, t):
  return jax.tree.map(
      lambda a: jax.lax.dynamic_index_in_dim(a, t, keepdims=False), xs)


def _forward(gate, hidden_of, weights, carry0, xs, unroll):
  """xs [T, B, D] -> (carry_T, ys [T, B, H], residuals)."""
  steps = xs.shape[0]
  xp_all = _matmul(xs, weights["w_x"]) + weights["b"]
  # A [G*H, H] copy, contracted along its contiguous axis: at hidden 1024
  # this in-loop matmul runs at ~210 instead of ~135 GFLOP/s on 2 cores.
  w_h_t = weights["w_h"].T

  def step(state, t):
    carry, xp = state
    xp_next = _at(xp_all, jnp.minimum(t + 1, steps - 1))
    h = hidden_of(carry).astype(w_h_t.dtype)  # carries are f32
    hp = jax.lax.dot_general(h, w_h_t, (((1,), (1,)), ((), ())))
    new_carry, y = gate(carry, xp, hp, weights["extras"])
    return (new_carry, xp_next), (y, hp, carry)

  (carry, _), (ys, hp_all, carries_prev) = jax.lax.scan(
      step, (carry0, xp_all[0]), jnp.arange(steps), unroll=unroll)
  return carry, ys, (xp_all, hp_all, carries_prev)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def fused_scan(gate: Callable, hidden_of: Callable, unroll: int,
               weights: dict[str, Any], carry0: Any, xs: Array):
  """Runs a cell over xs [T, B, D] (time-major) -> (carry_T, ys [T, B, H]).

  weights: {"w_x": [D, G*H], "b": [G*H], "w_h": [H, G*H], "extras": {...}}.
  """
  carry, ys, _ = _forward(gate, hidden_of, weights, carry0, xs, unroll)
  return carry, ys


def _fused_fwd(gate, hidden_of, unroll, weights, carry0, xs):
  carry, ys, residuals = _forward(gate, hidden_of, weights, carry0, xs,
                                  unroll)
  return (carry, ys), (weights, xs, residuals)


def _fused_bwd(gate, hidden_of, unroll, saved, cotangents):
  weights, xs, (xp_all, hp_all, carries_prev) = saved
  d_carry_final, d_ys = cotangents
  steps = xs.shape[0]
  w_h = weights["w_h"]
  extras = weights["extras"]
  per_step = (carries_prev, xp_all, hp_all, d_ys)

  def step(state, t):
    d_carry, d_extras, inputs = state
    inputs_next = _at(per_step, jnp.maximum(t - 1, 0))
    carry_prev, xp, hp, d_y = inputs
    _, gate_vjp = jax.vjp(gate, carry_prev, xp, hp, extras)
    d_prev, d_xp, d_hp, d_ex = gate_vjp((d_carry, d_y))
    # dL/dh_{t-1} also flows through the recurrent matmul.
    d_h = jax.lax.dot_general(  # d_hp W_hh^T, W_hh's contiguous axis
        d_hp.astype(w_h.dtype), w_h, (((1,), (1,)), ((), ())))
    d_h = d_h.astype(jnp.float32)
    _, hidden_vjp = jax.vjp(hidden_of, carry_prev)
    d_prev = jax.tree.map(jnp.add, d_prev, hidden_vjp(d_h)[0])
    d_extras = jax.tree.map(jnp.add, d_extras, d_ex)
    return (d_prev, d_extras, inputs_next), (d_xp, d_hp)

  init = (d_carry_final, jax.tree.map(jnp.zeros_like, extras),
          _at(per_step, steps - 1))
  (d_carry0, d_extras, _), (d_xp, d_hp) = jax.lax.scan(
      step, init, jnp.arange(steps), reverse=True, unroll=unroll)

  flat = lambda a: a.reshape(-1, a.shape[-1])  # [T, B, K] -> [T*B, K]
  h_prev = hidden_of(carries_prev)
  d_weights = {
      "w_x": (flat(xs).T @ flat(d_xp)).astype(weights["w_x"].dtype),
      "b": jnp.sum(flat(d_xp), axis=0).astype(weights["b"].dtype),
      "w_h": (flat(h_prev).astype(d_hp.dtype).T @ flat(d_hp)).astype(
          weights["w_h"].dtype),
      "extras": d_extras,
  }
  d_xs = _matmul(d_xp.astype(xs.dtype), weights["w_x"].T)
  return d_weights, d_carry0, d_xs


fused_scan.defvjp(_fused_fwd, _fused_bwd)
