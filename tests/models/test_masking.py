"""Variable-length sequences and bidirectional layers, against running each
sequence on its own, unpadded."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab.errors import UserError
from rnnlab.models import cells
from rnnlab.models import layers
from tests.models.helpers import randomize

B, D, H, T = 3, 5, 4, 7
LENGTHS = np.array([7, 4, 1])


def _xs(steps=T, seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(B, steps, D)),
                     jnp.float32)



def _close(a, b):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5,
                                                       atol=1e-6), a, b)


def test_reverse_valid():
  xs = jnp.arange(2 * 5).reshape(2, 5)[..., None]
  out = layers.reverse_valid(xs, jnp.array([5, 3]))[..., 0]
  np.testing.assert_array_equal(out, [[4, 3, 2, 1, 0], [7, 6, 5, 8, 9]])
  np.testing.assert_array_equal(
      layers.reverse_valid(out[..., None], jnp.array([5, 3]))[..., 0],
      xs[..., 0])


@pytest.mark.parametrize("hoist", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("cell_name", ["rnn", "lstm", "gru"])
def test_masked_layer_equals_each_sequence_alone(cell_name, reverse, hoist):
  """Valid outputs and the final carry match the unpadded sequence; padded
  outputs are exactly zero."""
  cell = cells.create_cell(cell_name, H, {})
  layer = layers.Recurrent(cell, reverse=reverse,
                           hoist_input_projection=hoist)
  xs = _xs()
  variables = randomize(layer.init(jax.random.key(0), xs), seed=1)
  carry, ys = layer.apply(variables, xs, seq_lengths=jnp.asarray(LENGTHS))
  for b, n in enumerate(LENGTHS):
    alone_carry, alone_ys = layer.apply(variables, xs[b:b + 1, :n])
    _close(ys[b:b + 1, :n], alone_ys)
    _close(jax.tree.map(lambda c: c[b:b + 1], carry), alone_carry)
    assert np.all(np.asarray(ys[b, n:]) == 0)


@pytest.mark.parametrize("cell_name", ["lstm", "gru"])
def test_appending_padding_changes_nothing(cell_name):
  cell = cells.create_cell(cell_name, H, {})
  layer = layers.Bidirectional(cell)
  xs = _xs()
  variables = randomize(layer.init(jax.random.key(0), xs), seed=1)
  lengths = jnp.asarray(LENGTHS)
  garbage = 50 * _xs(steps=3, seed=9)
  short = layer.apply(variables, xs, seq_lengths=lengths)
  long = layer.apply(variables, jnp.concatenate([xs, garbage], 1),
                     seq_lengths=lengths)
  _close(short[0], long[0])
  _close(short[1], long[1][:, :T])
  assert np.all(np.asarray(long[1][:, T:]) == 0)


@pytest.mark.parametrize("merge", ["concat", "sum"])
@pytest.mark.parametrize("cell_name", ["rnn", "lstm", "gru"])
def test_bidirectional_equals_forward_and_manually_reversed_backward(
    cell_name, merge):
  cell = cells.create_cell(cell_name, H, {})
  bi = layers.Bidirectional(cell, merge=merge)
  xs = _xs(seed=3)
  variables = randomize(bi.init(jax.random.key(0), xs), seed=1)
  params = variables["params"]
  assert set(params) == {"forward", "backward"}  # untied directions
  (carry_f, carry_b), ys = bi.apply(variables, xs,
                                    seq_lengths=jnp.asarray(LENGTHS))
  one_way = layers.Recurrent(cell)
  for b, n in enumerate(LENGTHS):
    x = xs[b:b + 1, :n]
    cf, yf = one_way.apply({"params": params["forward"]}, x)
    cb, yb_reversed = one_way.apply({"params": params["backward"]},
                                    x[:, ::-1])
    yb = yb_reversed[:, ::-1]
    expected = (jnp.concatenate([yf, yb], -1) if merge == "concat"
                else yf + yb)
    _close(ys[b:b + 1, :n], expected)
    _close(jax.tree.map(lambda c: c[b:b + 1], carry_f), cf)
    _close(jax.tree.map(lambda c: c[b:b + 1], carry_b), cb)
    assert np.all(np.asarray(ys[b, n:]) == 0)
  assert ys.shape == (B, T, 2 * H if merge == "concat" else H)


def test_bidirectional_without_lengths_is_whole_sequence():
  cell = cells.create_cell("gru", H, {})
  bi = layers.Bidirectional(cell)
  xs = _xs(seed=4)
  variables = randomize(bi.init(jax.random.key(0), xs), seed=1)
  full = jnp.full((B,), T)
  _close(bi.apply(variables, xs), bi.apply(variables, xs, seq_lengths=full))


def test_bidirectional_bad_merge_is_a_clear_error():
  cell = cells.create_cell("gru", H, {})
  with pytest.raises(UserError, match=r"Unknown bidirectional merge 'mean'"
                     r".*'concat', 'sum'"):
    layers.Bidirectional(cell, merge="mean").init(jax.random.key(0), _xs())


def test_stack_with_lengths_equals_each_sequence_alone():
  stack = layers.RecurrentStack("lstm", H, num_layers=2, dropout_rate=0.3,
                                cell_options={}, schedule="wavefront")
  xs = _xs(seed=5)
  variables = randomize(stack.init(jax.random.key(0), xs), seed=1)
  carries, ys = stack.apply(variables, xs, seq_lengths=jnp.asarray(LENGTHS))
  for b, n in enumerate(LENGTHS):
    alone_carries, alone_ys = stack.apply(variables, xs[b:b + 1, :n])
    _close(ys[b:b + 1, :n], alone_ys)
    _close(jax.tree.map(lambda c: c[b:b + 1], carries), alone_carries)
    assert np.all(np.asarray(ys[b, n:]) == 0)
