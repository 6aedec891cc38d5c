"""Helpers shared by the model tests."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def randomize(variables, seed=0):
  """Random N(0, 0.5²) weights and biases (the init's zero biases would
  hide bugs)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda p: jnp.asarray(rng.normal(0, 0.5, p.shape), p.dtype), variables)
