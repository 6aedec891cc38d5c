"""Hash-based random numbers: dropout masks and uniforms."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import hashrng
from rnnlab.models import layers

SHAPE = (64, 128, 128)  # 1M elements


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_keep_fraction_matches_rate(rate):
  keep = np.asarray(hashrng.keep_mask(jax.random.key(0), SHAPE, rate))
  assert keep.dtype == bool and keep.shape == SHAPE
  # Binomial std at 1M elements is < 0.0005.
  assert abs(keep.mean() - (1 - rate)) < 0.002
  # Every slice along each axis gets its share (no striping by position).
  for axis in range(3):
    means = keep.mean(axis=tuple(a for a in range(3) if a != axis))
    assert np.all(np.abs(means - (1 - rate)) < 0.05)


def test_masks_are_deterministic_and_independent():
  a = np.asarray(hashrng.keep_mask(jax.random.key(1), SHAPE, 0.5),
                 np.float32).ravel()
  again = np.asarray(hashrng.keep_mask(jax.random.key(1), SHAPE, 0.5),
                     np.float32).ravel()
  b = np.asarray(hashrng.keep_mask(jax.random.key(2), SHAPE, 0.5),
                 np.float32).ravel()
  np.testing.assert_array_equal(a, again)
  assert abs(np.corrcoef(a, b)[0, 1]) < 0.01          # across keys
  assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 0.01  # neighbours
  assert abs(np.corrcoef(a[:-256], a[256:])[0, 1]) < 0.01


def test_dropout_module_scales_and_switches_off():
  x = jnp.ones(SHAPE)
  drop = layers.Dropout(0.25)
  y = drop.apply({}, x, deterministic=False,
                 rngs={"dropout": jax.random.key(0)})
  values = np.unique(np.asarray(y))
  np.testing.assert_allclose(values, [0.0, 1 / 0.75], rtol=1e-6)
  assert float(y.mean()) == pytest.approx(1.0, abs=0.005)  # mean preserved
  np.testing.assert_array_equal(drop.apply({}, x, deterministic=True), x)
  assert not np.any(layers.Dropout(1.0).apply(
      {}, x, deterministic=False, rngs={"dropout": jax.random.key(0)}))


def test_uniform_is_in_open_interval_and_uniform():
  u = np.asarray(hashrng.uniform(hashrng.seeds(jax.random.key(3)), SHAPE))
  assert u.dtype == np.float32 and 0 < u.min() and u.max() < 1
  hist, _ = np.histogram(u, bins=10, range=(0, 1))
  assert np.all(np.abs(hist / u.size - 0.1) < 0.002)
