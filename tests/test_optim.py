"""Optimizer chains and schedules from config."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rnnlab import base_config
from rnnlab import optim


def optim_config(**kw):
  c = base_config.get_config().optim
  c.update(dict(schedule="constant", warmup_steps=0), **kw)
  return c


def test_warmup_cosine_shape():
  schedule = optim.create_schedule(
      optim_config(schedule="warmup_cosine", learning_rate=1.0,
                   warmup_steps=10, final_lr_fraction=0.1), total_steps=110)
  assert float(schedule(0)) == 0.0
  assert float(schedule(5)) == pytest.approx(0.5)
  assert float(schedule(10)) == pytest.approx(1.0)
  assert float(schedule(60)) == pytest.approx(0.55, abs=1e-3)  # half way
  assert float(schedule(110)) == pytest.approx(0.1)


def test_constant_schedule_with_optional_warmup():
  flat = optim.create_schedule(optim_config(learning_rate=0.3), 100)
  assert float(flat(0)) == float(flat(99)) == pytest.approx(0.3)
  warm = optim.create_schedule(optim_config(learning_rate=0.3,
                                            warmup_steps=4), 100)
  assert float(warm(2)) == pytest.approx(0.15)
  assert float(warm(50)) == pytest.approx(0.3)


def test_chain_clips_by_global_norm_before_adam():
  tx = optim.create_optimizer(optim_config(learning_rate=0.1, clip_norm=1.0,
                                           name="sgd"), 10)
  params = {"w": jnp.zeros(2)}
  grads = {"w": jnp.array([30.0, 40.0])}  # norm 50 -> clipped to norm 1
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["w"], [-0.06, -0.08], rtol=1e-6)
  # Adam with clipping equals optax's own chain.
  tx = optim.create_optimizer(optim_config(learning_rate=0.1), 10)
  ref = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.1))
  mine, _ = tx.update(grads, tx.init(params), params)
  theirs, _ = ref.update(grads, ref.init(params), params)
  np.testing.assert_allclose(mine["w"], theirs["w"], rtol=1e-6)


def test_unknown_names_list_valid_choices():
  with pytest.raises(ValueError, match=r"Unknown optimizer 'adan'.*'adam', "
                     r"'adamw', 'sgd'"):
    optim.create_optimizer(optim_config(name="adan"), 10)
  with pytest.raises(ValueError, match=r"Unknown schedule 'cos'.*"
                     r"'constant', 'warmup_cosine'"):
    optim.create_schedule(optim_config(schedule="cos"), 10)
