"""Attention scores against their formulas in numpy; masks; causality."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab.errors import UserError
from rnnlab.models import attention
from tests.helpers import assert_float32_close

B, Q, K, D = 2, 3, 5, 4


def _inputs(seed=0, dq=D, dk=D):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.normal(size=(B, Q, dq)), jnp.float32),
          jnp.asarray(rng.normal(size=(B, K, dk)), jnp.float32),
          jnp.asarray(rng.normal(size=(B, K, 6)), jnp.float32))


def numpy_scores(kind, params, q, k):
  q, k = np.asarray(q, np.float64), np.asarray(k, np.float64)
  if kind == "dot":
    return np.einsum("bqd,bkd->bqk", q, k)
  if kind == "scaled_dot":
    return np.einsum("bqd,bkd->bqk", q, k) / np.sqrt(k.shape[-1])
  if kind == "general":  # q · (W k)
    w = np.asarray(params["key_proj"]["kernel"], np.float64)
    return np.einsum("bqd,bkd->bqk", q, k @ w)
  # additive: v · tanh(W_q q + W_k k + b)
  wq = np.asarray(params["query_proj"]["kernel"], np.float64)
  wk = np.asarray(params["key_proj"]["kernel"], np.float64)
  bk = np.asarray(params["key_proj"]["bias"], np.float64)
  v = np.asarray(params["v"], np.float64)[:, 0]
  hidden = np.tanh((q @ wq)[:, :, None] + (k @ wk + bk)[:, None])
  return hidden @ v


@pytest.mark.parametrize("kind", sorted(attention.SCORES))
def test_scores_weights_and_context_match_numpy(kind):
  q, k, v = _inputs()
  layer = attention.Attention(kind)
  variables = layer.init(jax.random.key(0), q, k, v)
  # Non-zero biases, so that a dropped bias would show.
  variables = jax.tree.map(lambda p: p + 0.1, variables)
  lengths = jnp.array([5, 3])
  context, weights = layer.apply(variables, q, k, v, key_lengths=lengths)
  params = variables.get("params", {}).get("score", {})
  scores = numpy_scores(kind, params, q, k)
  valid = np.arange(K)[None, None, :] < np.asarray(lengths)[:, None, None]
  scores = np.where(valid, scores, -np.inf)
  expected = np.exp(scores - scores.max(-1, keepdims=True))
  expected /= expected.sum(-1, keepdims=True)
  np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(context, expected @ np.asarray(v), rtol=1e-5,
                             atol=1e-5)


@pytest.mark.parametrize("kind", sorted(attention.SCORES))
def test_weights_sum_to_one_and_masked_keys_get_exactly_zero(kind):
  q, k, v = _inputs(1)
  layer = attention.Attention(kind)
  variables = layer.init(jax.random.key(0), q, k, v)
  lengths = jnp.array([2, 4])
  _, weights = layer.apply(variables, q, k, v, key_lengths=lengths)
  assert_float32_close(weights.sum(-1), 1.0)
  assert np.all(np.asarray(weights[0, :, 2:]) == 0)
  assert np.all(np.asarray(weights[1, :, 4:]) == 0)
  assert np.all(np.asarray(weights[0, :, :2]) > 0)


def test_padding_keys_changes_nothing():
  q, k, v = _inputs(2)
  layer = attention.Attention("additive")
  variables = layer.init(jax.random.key(0), q, k, v)
  lengths = jnp.array([5, 3])
  short = layer.apply(variables, q, k, v, key_lengths=lengths)
  pad = lambda a: jnp.concatenate([a, 100 * jnp.ones_like(a[:, :2])], 1)
  long = layer.apply(variables, q, pad(k), pad(v), key_lengths=lengths)
  # Different key lengths: different programs, equal to float32 rounding.
  assert_float32_close(short[0], long[0])
  assert_float32_close(short[1], long[1][:, :, :K])


@pytest.mark.parametrize("kind", sorted(attention.SCORES))
def test_causal_self_attention_never_sees_the_future(kind):
  """Over a model's own hidden states: output t has exactly zero gradient
  with respect to every state after t, and position 0 is finite."""
  steps = 6
  h = jnp.asarray(np.random.default_rng(3).normal(size=(1, steps, D)),
                  jnp.float32)
  layer = attention.Attention(kind)
  variables = layer.init(jax.random.key(0), h, h)

  def context_at(t, states):
    return layer.apply(variables, states, states, causal=True)[0][0, t]

  context, weights = layer.apply(variables, h, h, causal=True)
  assert np.all(np.isfinite(context)) and np.all(np.isfinite(weights))
  assert_float32_close(weights[0, 0], np.eye(steps)[0])
  for t in range(steps):
    jac = jax.jacobian(context_at, argnums=1)(t, h)  # [D, 1, steps, D]
    assert np.all(np.asarray(jac[:, :, t + 1:]) == 0), t
    assert np.any(np.asarray(jac[:, :, :t + 1]) != 0), t
  grads = jax.grad(lambda s: jnp.sum(context_at(0, s)))(h)
  assert np.all(np.isfinite(grads))


def test_causal_offset_for_one_step_queries():
  """A decoder stepping one query at a time: query_offset is its position."""
  h = jnp.asarray(np.random.default_rng(4).normal(size=(B, K, D)),
                  jnp.float32)
  layer = attention.Attention("dot")
  variables = layer.init(jax.random.key(0), h, h)
  full, full_w = layer.apply(variables, h, h, causal=True)
  for t in range(K):
    step, step_w = layer.apply(variables, h[:, t:t + 1], h, causal=True,
                               query_offset=t)
    # One query vs all queries: different programs (seen 1.03e-6 apart on
    # an AVX2-only CPU), so float32 tolerances, not 1e-6.
    assert_float32_close(step[:, 0], full[:, t])
    assert_float32_close(step_w[:, 0], full_w[:, t])


def test_query_with_no_valid_key_gives_zeros_not_nan():
  q, k, v = _inputs(5)
  layer = attention.Attention("dot")
  variables = layer.init(jax.random.key(0), q, k, v)
  context, weights = layer.apply(variables, q, k, v,
                                 key_lengths=jnp.array([0, 5]))
  assert np.all(np.asarray(context[0]) == 0)
  assert np.all(np.asarray(weights[0]) == 0)
  grads = jax.grad(lambda x: jnp.sum(layer.apply(
      variables, x, k, v, key_lengths=jnp.array([0, 5]))[0]))(q)
  assert np.all(np.isfinite(grads))


def test_bad_kind_and_widths_are_clear_errors():
  q, k, v = _inputs(6, dq=3, dk=4)
  with pytest.raises(UserError, match=r"Unknown attention score 'luong'.*"
                     r"'additive', 'dot', 'general', 'scaled_dot'"):
    attention.Attention("luong").init(jax.random.key(0), q, k, v)
  with pytest.raises(UserError, match=r"same width; got 3 and 4.*'general'"):
    attention.Attention("dot").init(jax.random.key(0), q, k, v)
  # general and additive take different widths.
  for kind in ("general", "additive"):
    layer = attention.Attention(kind)
    context, _ = layer.apply(layer.init(jax.random.key(0), q, k, v), q, k, v)
    assert context.shape == (B, Q, 6)
