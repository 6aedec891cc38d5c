"""sparse_adam vs PyTorch's SparseAdam, transcribed in numpy.

The comparison with torch.optim.SparseAdam itself runs in
`python -m benchmarks.parity` (bench extra), so that the tests need no
PyTorch.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rnnlab import base_config
from rnnlab import optim
from rnnlab.errors import UserError
from tests.helpers import assert_float32_close

V, E, STEPS = 50, 8, 20
B1, B2, EPS = 0.9, 0.999, 1e-8


def lr_at(count):  # a schedule, as the trainer passes one
  return 0.05 * 0.97 ** count


class NumpySparseAdam:
  """torch.optim.SparseAdam, transcribed in float64 numpy.

  Only the given rows of the moments and the parameter move; one step
  counter per tensor, incremented every step; eps on the raw sqrt(v).
  """

  def __init__(self, param):
    self.param = param.astype(np.float64)
    self.m = np.zeros_like(self.param)
    self.v = np.zeros_like(self.param)
    self.step = 0

  def update(self, grad, rows, lr):
    self.step += 1
    g = grad[rows].astype(np.float64)
    self.m[rows] += (1 - B1) * (g - self.m[rows])
    self.v[rows] += (1 - B2) * (g * g - self.v[rows])
    step_size = lr * np.sqrt(1 - B2 ** self.step) / (1 - B1 ** self.step)
    self.param[rows] -= step_size * self.m[rows] / (np.sqrt(self.v[rows]) +
                                                    EPS)


def sparse_state(opt_state) -> optim.SparseAdamState:
  found = [x for x in jax.tree.leaves(
      opt_state, is_leaf=lambda x: isinstance(x, optim.SparseAdamState))
           if isinstance(x, optim.SparseAdamState)]
  assert len(found) == 1
  return found[0]


def problem(seed, dtype=np.float32):
  """Per step: token ids (with repeats), their rows, and the gradients.

  A quarter of the batch's rows get an exactly zero gradient: present in
  PyTorch's sparse gradient, but invisible to a nonzero test.
  """
  rng = np.random.default_rng(seed)
  steps = []
  for _ in range(STEPS):
    ids = rng.integers(0, V, size=(3, 4))
    rows = np.unique(ids)
    g_embed = np.zeros((V, E), dtype)
    live = rows[rng.random(len(rows)) > 0.25]
    g_embed[live] = rng.normal(size=(len(live), E))
    g_dense = rng.normal(size=(E, 4)).astype(dtype)
    steps.append((ids, rows, live, {"embed": {"embedding": g_embed},
                                    "dense": {"kernel": g_dense}}))
  params = {"embed": {"embedding": rng.normal(size=(V, E)).astype(dtype)},
            "dense": {"kernel": rng.normal(size=(E, 4)).astype(dtype)}}
  return params, steps


@pytest.mark.parametrize("with_token_ids", [True, False])
@pytest.mark.parametrize("dtype,atol", [("float64", 1e-9), ("float32", 1e-5)])
def test_matches_pytorch_semantics_and_leaves_absent_rows_untouched(
    with_token_ids, dtype, atol):
  # float64 makes the comparison tight enough to see eps misplaced (optax
  # adds it to the bias-corrected sqrt(v)); float32 is what training runs.
  with jax.enable_x64(dtype == "float64"):
    check_against_numpy(with_token_ids, np.dtype(dtype), atol)


def check_against_numpy(with_token_ids, dtype, atol):
  params, steps = problem(seed=1 + with_token_ids, dtype=dtype)
  tx = optim.sparse_adam(lr_at, B1, B2, EPS,
                         sparse_mask=optim.path_mask(("embed",)))
  dense_tx = optax.adam(lr_at, B1, B2, EPS)
  update, dense_update = jax.jit(tx.update), jax.jit(dense_tx.update)
  ref = NumpySparseAdam(params["embed"]["embedding"])
  state, dense_state = tx.init(params), dense_tx.init(params["dense"])
  dense_params = params["dense"]
  zero_grad_rows_moved = 0
  for i, (ids, rows, live, grads) in enumerate(steps):
    extra = {"token_ids": jnp.asarray(ids)} if with_token_ids else {}
    present = rows if with_token_ids else live
    before, before_state = params, sparse_state(state)
    updates, state = update(grads, state, params, **extra)
    params = optax.apply_updates(params, updates)
    ref.update(grads["embed"]["embedding"], present, lr_at(i))

    table = np.asarray(params["embed"]["embedding"])
    np.testing.assert_allclose(table, ref.param, rtol=0, atol=atol)
    absent = np.setdiff1d(np.arange(V), present)
    assert len(absent) > 0 and len(present) > 0
    new_state = sparse_state(state)
    for new, old in ((table, before["embed"]["embedding"]),
                     (new_state.mu["embed"]["embedding"],
                      before_state.mu["embed"]["embedding"]),
                     (new_state.nu["embed"]["embedding"],
                      before_state.nu["embed"]["embedding"])):
      np.testing.assert_array_equal(np.asarray(new)[absent],
                                    np.asarray(old)[absent])
    # Present rows move, even those whose gradient is zero this step, once
    # they have momentum.
    moved = np.any(table != np.asarray(before["embed"]["embedding"]), axis=1)
    has_momentum = np.any(np.asarray(before_state.mu["embed"]["embedding"])
                          != 0, axis=1)
    expect = np.zeros(V, bool)
    expect[present] = True
    expect &= has_momentum | np.isin(np.arange(V), live)
    np.testing.assert_array_equal(moved, expect)
    zero_grad_rows_moved += np.sum(moved & ~np.isin(np.arange(V), live))

    dense_updates, dense_state = dense_update(grads["dense"], dense_state,
                                              dense_params)
    dense_params = optax.apply_updates(dense_params, dense_updates)
    # sparse_adam's dense branch vs optax.adam: two programs.
    tolerance = {} if dtype == np.float32 else dict(rtol=1e-6, atol=1e-7)
    assert_float32_close(params["dense"]["kernel"], dense_params["kernel"],
                         **tolerance)
  assert int(sparse_state(state).count) == STEPS
  assert (zero_grad_rows_moved > 0) == with_token_ids


def test_token_ids_move_zero_gradient_rows_that_a_nonzero_test_skips():
  """The two modes differ exactly on present rows with a zero gradient."""
  tx = optim.sparse_adam(0.1)  # every parameter sparse
  table = jnp.ones((6, 2))
  update = jax.jit(tx.update)
  _, state = update(jnp.ones((6, 2)), tx.init(table), table)  # all rows
  # Now rows 0-1 are live, 2-3 present with a zero gradient, 4-5 absent; all
  # have momentum, so any row counted as present moves.
  grad = jnp.zeros((6, 2)).at[:2].set(1)
  ids = jnp.array([[0, 1, -1], [2, 3, 6]])  # -1 and 6: padding, no row
  with_ids, s_ids = update(grad, state, table, token_ids=ids)
  without, s_without = update(grad, state, table)
  moved = lambda u: np.asarray(jnp.any(u != 0, axis=1)).tolist()
  assert moved(with_ids) == [True] * 4 + [False] * 2
  assert moved(without) == [True] * 2 + [False] * 4
  mu, mu_ids, mu_without = (sparse_state(s).mu for s in (state, s_ids,
                                                         s_without))
  assert_float32_close(mu_ids[2:4], 0.9 * mu[2:4])  # jax vs numpy
  np.testing.assert_array_equal(mu_without[2:], mu[2:])
  np.testing.assert_array_equal(mu_ids[4:], mu[4:])


def test_create_optimizer_sparse_adam_is_sparse_on_config_paths():
  c = base_config.get_config().optim
  c.update(name="sparse_adam", schedule="constant", warmup_steps=0,
           learning_rate=0.05, clip_norm=0.0, weight_decay=0.1,
           sparse_params=("embed/",))
  params, steps = problem(seed=4)
  params["dense"]["bias"] = np.ones(4, np.float32)
  tx = optim.create_optimizer(c, 100)
  state = tx.init(params)
  ids, rows, _, grads = steps[0]
  grads = dict(grads, dense=dict(grads["dense"], bias=np.zeros(4, np.float32)))
  updates, _ = jax.jit(tx.update)(grads, state, params, token_ids=ids)
  absent = np.setdiff1d(np.arange(V), rows)
  # No weight decay on the lazy table: its absent rows stay exactly put.
  assert np.all(np.asarray(updates["embed"]["embedding"])[absent] == 0)
  # The dense kernel is decayed (AdamW-style), the bias is not.
  assert np.all(np.asarray(updates["dense"]["bias"]) == 0)
  direct = optim.sparse_adam(0.05, sparse_mask=optim.path_mask("embed"))
  expect, _ = jax.jit(direct.update)(grads, direct.init(params), params,
                                     token_ids=ids)
  np.testing.assert_allclose(
      updates["dense"]["kernel"],
      expect["dense"]["kernel"] - 0.05 * 0.1 * params["dense"]["kernel"],
      rtol=1e-5, atol=1e-7)
  # Two optimizer programs: equal to float32 rounding (a decayed table
  # would be 0.05 * 0.1 * |param| away).
  assert_float32_close(updates["embed"]["embedding"],
                       expect["embed"]["embedding"])

  c.sparse_params = ("embedding_table",)
  with pytest.raises(UserError, match="matches no trainable parameter.*"
                     "dense/kernel, embed/embedding"):
    optim.create_optimizer(c, 100).init(params)
