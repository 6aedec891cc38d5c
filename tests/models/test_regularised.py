"""Deep stacks (sizes, residual, layer norm, bidirectional) and the dropout
variants (variational input/output/recurrent, zoneout) against loops."""
from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab.errors import UserError
from rnnlab.models import cells
from rnnlab.models import layers
from tests.models.helpers import randomize

B, D, H, T = 3, 5, 4, 6
RNGS = {"dropout": jax.random.key(7)}


def _xs(seed=0, width=D):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(B, T, width)),
                     jnp.float32)



def _close(a, b, tol=1e-5):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=tol,
                                                       atol=tol), a, b)


def _stack(**kwargs):
  defaults = dict(cell="lstm", hidden_size=H, num_layers=2,
                  cell_options=flax.core.FrozenDict())
  return layers.RecurrentStack(**{**defaults, **kwargs})


@pytest.mark.parametrize("rate_name", ["input_dropout_rate",
                                       "output_dropout_rate"])
def test_variational_dropout_one_mask_per_sequence_and_none_in_eval(rate_name):
  stack = _stack(**{rate_name: 0.5})
  xs = jnp.ones((B, T, D))
  variables = stack.init(jax.random.key(0), xs)
  out = stack.apply(variables, xs, 0.5, True, rngs=RNGS,
                    method=layers.RecurrentStack._variational)
  dropped = np.asarray(out) == 0
  assert dropped.any() and not dropped.all()
  # The same units are dropped at every time step of a sequence...
  assert np.all(dropped == dropped[:, :1])
  # ...but not in every sequence.
  assert not np.all(dropped == dropped[:1])
  np.testing.assert_allclose(np.asarray(out)[~dropped], 2.0)
  same = stack.apply(variables, xs, 0.5, False,
                     method=layers.RecurrentStack._variational)
  np.testing.assert_array_equal(same, xs)
  # In the full stack: training differs from evaluation, evaluation is the
  # plain stack's.
  train = stack.apply(variables, xs, train=True, rngs=RNGS)[1]
  evaluation = stack.apply(variables, xs)[1]
  plain = _stack().apply(variables, xs)[1]
  assert not np.allclose(train, evaluation)
  np.testing.assert_array_equal(evaluation, plain)


@pytest.mark.parametrize("cell_name, options", [
    ("rnn", {}), ("lstm", {}), ("gru", {"reset_after": True}),
    ("gru", {"reset_after": False})])
def test_recurrent_dropout_masks_h_in_the_matmuls_at_every_step(cell_name,
                                                                 options):
  cell = cells.create_cell(cell_name, H, options)
  layer = layers.Recurrent(cell, hoist_input_projection=False)
  xs = _xs(1)
  variables = randomize(layer.init(jax.random.key(0), xs), seed=1)
  mask = jnp.asarray(np.random.default_rng(2).integers(0, 2, (B, H)) * 2.0,
                     jnp.float32)
  carry, ys = layer.apply(variables, xs, hidden_mask=mask)
  # Step by step with the same mask each step.
  loop_carry = cell.initialize_carry((B,))
  cell_vars = {"params": variables["params"]["cell"]}
  for t in range(T):
    loop_carry, y = cell.apply(cell_vars, loop_carry, xs[:, t], mask)
    _close(ys[:, t], y)
  _close(carry, loop_carry)
  # The mask reaches the matmul only: an all-ones mask changes nothing, and
  # masking differs from not masking.
  _close(layer.apply(variables, xs, hidden_mask=jnp.ones((B, H))),
         layer.apply(variables, xs))
  assert not np.allclose(ys, layer.apply(variables, xs)[1])


def test_recurrent_dropout_in_stack_is_training_only():
  stack = _stack(recurrent_dropout_rate=0.5)
  xs = _xs(3)
  variables = stack.init(jax.random.key(0), xs)
  assert not np.allclose(stack.apply(variables, xs, train=True, rngs=RNGS)[1],
                         stack.apply(variables, xs)[1])
  np.testing.assert_array_equal(stack.apply(variables, xs)[1],
                                _stack().apply(variables, xs)[1])


@pytest.mark.parametrize("cell_name", ["lstm", "gru"])
def test_zoneout_keeps_units_in_training_and_averages_in_eval(cell_name):
  cell = cells.create_cell(cell_name, H, {})
  layer = layers.Recurrent(cell, hoist_input_projection=False)
  xs = _xs(4)
  variables = randomize(layer.init(jax.random.key(0), xs), seed=1)
  carry0 = cell.initialize_carry((B,))
  keep = jax.tree.map(
      lambda c: jnp.asarray(np.random.default_rng(5).random(
          (B, T) + c.shape[1:]) > 0.3), carry0)
  rate = 0.3
  train = layer.apply(variables, xs, zoneout=layers.Zoneout(rate, keep))
  evaluation = layer.apply(variables, xs, zoneout=layers.Zoneout(rate))
  cell_vars = {"params": variables["params"]["cell"]}
  c_train = c_eval = carry0
  for t in range(T):
    new, _ = cell.apply(cell_vars, c_train, xs[:, t])
    c_train = jax.tree.map(lambda k, n, o: jnp.where(k[:, t], n, o), keep,
                           new, c_train)
    _close(train[1][:, t], type(cell).hidden_of(c_train))
    new, _ = cell.apply(cell_vars, c_eval, xs[:, t])
    c_eval = jax.tree.map(lambda n, o: rate * o + (1 - rate) * n, new, c_eval)
    _close(evaluation[1][:, t], type(cell).hidden_of(c_eval))
  _close(train[0], c_train)


def test_residual_adds_each_layer_input():
  xs = _xs(6, width=H)  # equal widths: layer 0 has no residual either way
  plain, residual = _stack(), _stack(residual=True)
  variables = randomize(plain.init(jax.random.key(0), xs), seed=1)
  _, ys_plain = plain.apply(variables, xs)
  _, ys_res = residual.apply(variables, xs)
  first = _stack(num_layers=1).apply(
      {"params": {"layers_0": variables["params"]["layers_0"]}}, xs)[1]
  _close(ys_res - ys_plain, first)


def test_layer_norm_normalises_each_position_and_sizes_per_layer():
  stack = _stack(num_layers=3, hidden_sizes=(6, 5, 3), layer_norm=True,
                 residual=True)
  xs = _xs(7)
  variables = randomize(stack.init(jax.random.key(0), xs), seed=1)
  # Reset the norms to identity so the output is the raw normalised value.
  params = flax.core.unfreeze(variables["params"])
  for i in range(3):
    params[f"norms_{i}"] = {"scale": jnp.ones(params[f"norms_{i}"]["scale"].shape),
                            "bias": jnp.zeros(params[f"norms_{i}"]["bias"].shape)}
  carries, ys = stack.apply({"params": params}, xs)
  assert ys.shape == (B, T, 3)
  assert [jax.tree.leaves(c)[0].shape[-1] for c in carries] == [6, 5, 3]
  np.testing.assert_allclose(ys.mean(-1), 0, atol=1e-5)
  np.testing.assert_allclose(ys.std(-1), 1, atol=1e-2)
  with pytest.raises(UserError, match=r"hidden_sizes \(6, 5\) has 2 entries "
                     r"for num_layers=3"):
    _stack(num_layers=3, hidden_sizes=(6, 5)).init(jax.random.key(0), xs)


@pytest.mark.parametrize("options", [
    dict(layer_norm=True, residual=True),
    dict(zoneout_rate=0.2, hidden_sizes=(5, 4)),
    dict(recurrent_dropout_rate=0.3, input_dropout_rate=0.3)])
def test_step_by_step_equals_whole_sequence_in_eval(options):
  stack = _stack(cell="gru", **options)
  xs = _xs(8)
  variables = randomize(stack.init(jax.random.key(0), xs), seed=1)
  carries, ys = stack.apply(variables, xs)
  step_carries = stack.initialize_carry(B)
  for t in range(T):
    step_carries, y = stack.apply(variables, xs[:, t], step_carries,
                                  method=layers.RecurrentStack.step)
    _close(y, ys[:, t])
  _close(step_carries, carries)


def test_bidirectional_stack_with_padding_and_options():
  stack = _stack(bidirectional=True, layer_norm=True, residual=True,
                 zoneout_rate=0.1, recurrent_dropout_rate=0.2)
  xs = _xs(9)
  lengths = jnp.array([6, 3, 1])
  variables = randomize(stack.init(jax.random.key(0), xs), seed=1)
  for train in (False, True):
    carries, ys = stack.apply(variables, xs, train=train, rngs=RNGS,
                              seq_lengths=lengths)
    assert ys.shape == (B, T, 2 * H)
    assert len(carries) == 2 and len(carries[0]) == 2  # layers x directions
    for b, n in enumerate(np.asarray(lengths)):
      assert np.all(np.asarray(ys[b, n:]) == 0)
  # Padding invariance in evaluation.
  _, alone = stack.apply(variables, xs[1:2, :3])
  _close(stack.apply(variables, xs, seq_lengths=lengths)[1][1:2, :3], alone)
  with pytest.raises(UserError, match="bidirectional stack cannot run one "
                     "step at a time"):
    stack.apply(variables, xs[:, 0], stack.initialize_carry(B),
                method=layers.RecurrentStack.step)


def test_bad_rates_are_clear_errors():
  with pytest.raises(UserError, match=r"zoneout_rate must be in \[0, 1\), "
                     r"got 1.5"):
    _stack(zoneout_rate=1.5).init(jax.random.key(0), _xs())
