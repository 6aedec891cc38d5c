"""Optimizer chains and schedules from config."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rnnlab import base_config
from rnnlab import optim
from rnnlab.errors import UserError
from tests.helpers import FLOAT32_RTOL
from tests.helpers import assert_float32_close


def optim_config(**kw):
  c = base_config.get_config().optim
  c.update(dict(schedule="constant", warmup_steps=0), **kw)
  return c


def model_params():
  """A small tree with the parameter kinds the masks must tell apart."""
  rng = np.random.default_rng(0)
  normal = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  return {"embed": {"embedding": normal(7, 3)},
          "rnn": {"layers_0": {"kernel": normal(3, 4), "bias": normal(4)},
                  "norm": {"scale": normal(4)}},
          "head": {"kernel": normal(4, 5), "bias": normal(5)}}


# --------------------------------------------------------------------------
# Schedules.


def test_warmup_cosine_shape():
  schedule = optim.create_schedule(
      optim_config(schedule="warmup_cosine", learning_rate=1.0,
                   warmup_steps=10, final_lr_fraction=0.1), total_steps=110)
  assert float(schedule(0)) == 0.0
  assert float(schedule(5)) == pytest.approx(0.5)
  assert float(schedule(10)) == pytest.approx(1.0)
  assert float(schedule(60)) == pytest.approx(0.55, abs=1e-3)  # half way
  # Through XLA's float32 cos: float32 tolerance.
  assert float(schedule(110)) == pytest.approx(0.1, rel=FLOAT32_RTOL)


def test_constant_schedule_with_optional_warmup():
  flat = optim.create_schedule(optim_config(learning_rate=0.3), 100)
  assert float(flat(0)) == float(flat(99)) == pytest.approx(0.3)
  warm = optim.create_schedule(optim_config(learning_rate=0.3,
                                            warmup_steps=4), 100)
  assert float(warm(2)) == pytest.approx(0.15)
  assert float(warm(50)) == pytest.approx(0.3)
  # reduce_on_plateau's base schedule is the same constant (+ warm-up).
  plateau = optim.create_schedule(optim_config(
      schedule="reduce_on_plateau", learning_rate=0.3, warmup_steps=4), 100)
  assert float(plateau(2)) == pytest.approx(0.15)
  assert float(plateau(99)) == pytest.approx(0.3)


def test_exponential_decays_at_epoch_ends_after_decay_after_epochs():
  c = optim_config(schedule="exponential", learning_rate=1.0, decay_rate=0.5,
                   decay_after_epochs=2)
  schedule = jax.jit(optim.create_schedule(c, 1000, steps_per_epoch=10))
  lr = lambda step: float(schedule(step))
  # Epochs 1-2 (steps 0-19) at the peak; x0.5 at the end of epoch 2, 3, ...
  # decay_rate ** E is XLA's float32 pow: float32 tolerance, not ==.
  approx = lambda x: pytest.approx(x, rel=FLOAT32_RTOL)
  assert lr(0) == lr(19) == approx(1.0)
  assert lr(20) == lr(29) == approx(0.5)
  assert lr(30) == approx(0.25)
  assert lr(55) == approx(0.0625)  # in epoch 6: decayed at the end of 2-5
  # decay_after_epochs 0 and 1: from the end of the first epoch (char-rnn).
  for after in (0, 1):
    c.decay_after_epochs = after
    schedule = optim.create_schedule(c, 1000, steps_per_epoch=10)
    assert float(schedule(9)) == approx(1.0)
    assert float(schedule(10)) == approx(0.5)
  # An optional warm-up multiplies it.
  c.update(decay_after_epochs=0, warmup_steps=4)
  schedule = optim.create_schedule(c, 1000, steps_per_epoch=2)
  assert float(schedule(1)) == approx(0.25)  # 1/4 warm, no decay
  assert float(schedule(3)) == approx(0.75 * 0.5)
  assert float(schedule(4)) == approx(0.25)


def test_exponential_needs_steps_per_epoch():
  c = optim_config(schedule="exponential")
  for bad in (None, 0):
    with pytest.raises(UserError, match="steps_per_epoch"):
      optim.create_schedule(c, 100, steps_per_epoch=bad)
    with pytest.raises(UserError, match="steps_per_epoch"):
      optim.create_optimizer(c, 100, steps_per_epoch=bad)


def test_create_optimizer_uses_the_epoch_schedule():
  c = optim_config(name="sgd", schedule="exponential", learning_rate=1.0,
                   decay_rate=0.5, decay_after_epochs=1, clip_norm=0.0)
  tx = optim.create_optimizer(c, 100, steps_per_epoch=2)
  params = {"w": jnp.zeros(1)}
  state = tx.init(params)
  got = []
  for _ in range(5):
    updates, state = tx.update({"w": jnp.ones(1)}, state, params)
    got.append(float(updates["w"][0]))
  # The schedule's float32 pow: float32 tolerance, not ==.
  assert got == pytest.approx([-1.0, -1.0, -0.5, -0.5, -0.25],
                              rel=FLOAT32_RTOL)


# --------------------------------------------------------------------------
# Reduce on plateau.


def test_reduce_on_plateau_follows_validation_losses():
  c = optim_config(name="sgd", schedule="reduce_on_plateau", learning_rate=1.0,
                   clip_norm=0.0, plateau_patience=2, plateau_factor=0.5,
                   plateau_threshold=0.01, plateau_min_scale=0.2,
                   freeze=("head",))  # nests the plateau state deeper
  tx = optim.create_optimizer(c, 100)
  params = model_params()
  state = tx.init(params)
  assert float(optim.lr_scale(state)) == 1.0
  step = jax.jit(tx.update, donate_argnums=1)
  grads = jax.tree.map(jnp.ones_like, params)
  losses_and_scales = [
      (1.0, 1.0),    # first: best = 1.0
      (0.995, 1.0),  # < 1% better: bad 1
      (0.5, 1.0),    # better: bad count resets
      (0.6, 1.0),    # bad 1
      (0.6, 0.5),    # bad 2 = patience: x0.5, count resets
      (0.6, 0.5),    # bad 1
      (float("nan"), 0.25),  # a non-finite loss is no improvement
      (0.6, 0.25),
      (0.6, 0.2),    # 0.125 floored at plateau_min_scale
      (0.6, 0.2),
      (0.6, 0.2),
  ]
  for loss, scale in losses_and_scales:
    before = jax.tree.map(lambda x: (x.shape, x.dtype), state)
    state = optim.report_validation(state, loss, c)
    # Same structure, shapes and dtypes: it goes back into the jitted step.
    assert jax.tree.map(lambda x: (x.shape, x.dtype), state) == before
    assert float(optim.lr_scale(state)) == pytest.approx(scale)
    updates, state = step(grads, state, params)
    np.testing.assert_allclose(updates["rnn"]["layers_0"]["kernel"], -scale,
                               rtol=1e-6)
    assert float(jnp.abs(updates["head"]["kernel"]).max()) == 0.0
  assert step._cache_size() == 1  # pylint: disable=protected-access
  assert float(optim.plateau_state(state).best) == 0.5


def test_report_validation_without_plateau_state_is_a_no_op():
  c = optim_config(schedule="constant")
  tx = optim.create_optimizer(c, 100)
  state = tx.init(model_params())
  after = optim.report_validation(state, 0.1, c)
  assert jax.tree.structure(after) == jax.tree.structure(state)
  assert all(a is b for a, b in zip(jax.tree.leaves(after),
                                    jax.tree.leaves(state)))
  assert float(optim.lr_scale(after)) == 1.0
  assert optim.plateau_state(after) is None


# --------------------------------------------------------------------------
# Optimizers.


def flat(tree) -> dict[str, jax.Array]:
  return {optim.param_path(k): v for k, v in
          jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_each_optimizer_decays_weights_and_lowers_a_quadratic_under_jit(name):
  c = optim_config(name=name, learning_rate=0.1, momentum=0.9,
                   weight_decay=0.1)
  tx = optim.create_optimizer(c, 100)
  update = jax.jit(tx.update)
  params = model_params()
  ids = jnp.arange(7)  # every embedding row is in the "batch"

  # From a fresh state, zero gradients leave only the decoupled decay term,
  # -lr * weight_decay * param, on matrices; biases and norm scales get none,
  # nor does sparse_adam's lazy table (decaying it would touch every row).
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, _ = update(zero, tx.init(params), params, token_ids=ids)
  decayed = {"rnn/layers_0/kernel", "head/kernel"}
  if name != "sparse_adam":
    decayed.add("embed/embedding")
  for path, u in flat(updates).items():
    expect = -0.01 * flat(params)[path] if path in decayed else 0.0
    np.testing.assert_allclose(u, expect, rtol=1e-5, atol=0, err_msg=path)

  target = jax.tree.map(lambda p: 0.5 * jnp.ones_like(p), params)
  loss = lambda p: sum(jnp.sum((a - b) ** 2) for a, b in
                       zip(jax.tree.leaves(p), jax.tree.leaves(target)))
  grad = jax.jit(jax.grad(loss))
  state = tx.init(params)
  start = float(loss(params))
  for _ in range(30):
    updates, state = update(grad(params), state, params, token_ids=ids)
    params = optax.apply_updates(params, updates)
  assert float(loss(params)) < 0.5 * start


def test_sgd_momentum_and_nesterov():
  params, grads = {"w": jnp.zeros(1)}, {"w": jnp.ones(1)}

  def two_steps(**kw):
    tx = optim.create_optimizer(optim_config(name="sgd", learning_rate=1.0,
                                             clip_norm=0.0, **kw), 10)
    state = tx.init(params)
    out = []
    for _ in range(2):
      updates, state = tx.update(grads, state, params)
      out.append(float(updates["w"][0]))
    return out

  assert two_steps() == [-1.0, -1.0]
  assert two_steps(momentum=0.5) == [-1.0, -1.5]
  assert two_steps(momentum=0.5, nesterov=True) == [-1.5, -1.75]


def test_rmsprop_is_char_rnn_rmsprop():
  c = optim_config(name="rmsprop", learning_rate=0.1, decay=0.95, eps=1e-8,
                   clip_norm=0.0)
  tx = optim.create_optimizer(c, 10)
  params, v = {"w": jnp.zeros(2)}, np.zeros(2)
  state = tx.init(params)
  for g in ([1.0, -2.0], [0.5, 0.5]):
    g = np.array(g)
    v = 0.95 * v + 0.05 * g * g
    updates, state = tx.update({"w": jnp.asarray(g, jnp.float32)}, state,
                               params)
    np.testing.assert_allclose(updates["w"], -0.1 * g / (np.sqrt(v) + 1e-8),
                               rtol=1e-5)


def test_weight_decay_mask_excludes_biases_norms_and_1d():
  mask = optim.weight_decay_mask(
      {**model_params(), "odd": {"bias": jnp.zeros((1, 4)),
                                 "vector": jnp.zeros(3)},
       # A classifier ensemble's members, stacked on a leading axis [M, ...].
       "members": {"hidden_candidate_bias": jnp.zeros((3, 8)),
                   "kernel": jnp.zeros((3, 8, 8))}})
  assert mask == {"embed": {"embedding": True},
                  "rnn": {"layers_0": {"kernel": True, "bias": False},
                          "norm": {"scale": False}},
                  "head": {"kernel": True, "bias": False},
                  "odd": {"bias": False, "vector": False},
                  "members": {"hidden_candidate_bias": False,
                              "kernel": True}}


# --------------------------------------------------------------------------
# Clipping.


def test_chain_clips_by_global_norm_before_the_optimizer():
  tx = optim.create_optimizer(optim_config(learning_rate=0.1, clip_norm=1.0,
                                           name="sgd"), 10)
  params = {"w": jnp.zeros(2)}
  grads = {"w": jnp.array([30.0, 40.0])}  # norm 50 -> clipped to norm 1
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["w"], [-0.06, -0.08], rtol=1e-6)
  # Adam with clipping equals optax's own chain, state layout included.
  tx = optim.create_optimizer(optim_config(learning_rate=0.1), 10)
  ref = optax.chain(optax.clip_by_global_norm(1.0),
                    optax.adam(optax.constant_schedule(0.1)))
  assert (jax.tree.structure(tx.init(params)) ==
          jax.tree.structure(ref.init(params)))
  mine, _ = tx.update(grads, tx.init(params), params)
  theirs, _ = ref.update(grads, ref.init(params), params)
  assert_float32_close(mine["w"], theirs["w"])  # two programs
  c = optim_config(clip_norm=1.0)
  assert bool(optim.clip_fired(grads, c))
  assert not bool(optim.clip_fired({"w": jnp.array([0.3, 0.4])}, c))
  c.clip_norm = 0.0  # off
  assert not bool(optim.clip_fired(grads, c))


def test_clip_by_value_bounds_elements_and_reports_firing():
  c = optim_config(name="sgd", learning_rate=1.0, clip="value", clip_value=1.0)
  tx = optim.create_optimizer(c, 10)
  params = {"a": jnp.zeros(3), "b": jnp.zeros((2, 2))}
  grads = {"a": jnp.array([3.0, -5.0, 0.5]), "b": jnp.full((2, 2), 0.25)}
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["a"], [-1.0, 1.0, -0.5])
  np.testing.assert_allclose(updates["b"], -0.25)
  fired = jax.jit(lambda g: optim.clip_fired(g, c))
  assert bool(fired(grads))
  small = jax.tree.map(lambda g: jnp.clip(g, -1, 1), grads)
  assert not bool(fired(small))
  c.clip_value = 0.0  # off: unclipped, never fired
  tx = optim.create_optimizer(c, 10)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["a"], [-3.0, 5.0, -0.5])
  assert not bool(optim.clip_fired(grads, c))


# --------------------------------------------------------------------------
# Freezing.


def test_freeze_gives_zero_updates_and_no_state_to_matched_params():
  c = optim_config(name="adam", learning_rate=0.1, weight_decay=0.1,
                   freeze=("embed", "rnn/layers_0/"))
  tx = optim.create_optimizer(c, 10)
  params = model_params()
  grads = jax.tree.map(lambda p: 100 * jnp.ones_like(p), params)
  state = tx.init(params)
  updates, _ = jax.jit(tx.update)(grads, state, params, token_ids=None)
  frozen = [updates["embed"]["embedding"], *updates["rnn"]["layers_0"].values()]
  for u in frozen:
    assert float(jnp.abs(u).max()) == 0.0
  for u in (updates["rnn"]["norm"]["scale"], *updates["head"].values()):
    assert float(jnp.abs(u).min()) > 0
  # Adam keeps two moments per trainable parameter and none for the frozen.
  shapes = [x.shape for x in jax.tree.leaves(state)]
  assert (7, 3) not in shapes and (3, 4) not in shapes
  assert shapes.count((4, 5)) == 2
  # Frozen gradients do not count towards the clipping norm.
  huge = {**jax.tree.map(jnp.zeros_like, params),
          "embed": {"embedding": 1e6 * jnp.ones((7, 3))}}
  assert not bool(optim.clip_fired(huge, c))
  assert bool(optim.clip_fired(huge, optim_config()))


def test_freeze_regex_matching_nothing_lists_the_parameters():
  tx = optim.create_optimizer(optim_config(freeze=("embed", "encoder/")), 10)
  with pytest.raises(UserError, match=r"'encoder/' matches no parameter\. "
                     r"Parameters: embed/embedding, head/bias, head/kernel, "
                     r"rnn/layers_0/bias"):
    tx.init(model_params())


# --------------------------------------------------------------------------
# Names.


def test_unknown_names_list_valid_choices():
  with pytest.raises(UserError, match=r"Unknown optimizer 'adan'.*'adagrad', "
                     r"'adam', 'adamw', 'rmsprop', 'sgd', 'sparse_adam'\."):
    optim.create_optimizer(optim_config(name="adan"), 10)
  with pytest.raises(UserError, match=r"Unknown schedule 'cos'.*'constant', "
                     r"'exponential', 'reduce_on_plateau', 'warmup_cosine'\."):
    optim.create_schedule(optim_config(schedule="cos"), 10)
  with pytest.raises(UserError, match=r"Unknown clip 'norm'.*'global_norm', "
                     r"'value'\."):
    optim.create_optimizer(optim_config(clip="norm"), 10)
  with pytest.raises(UserError, match=r"Unknown clip 'norm'"):
    optim.clip_fired({"w": jnp.ones(1)}, optim_config(clip="norm"))
  with pytest.raises(UserError, match=r"freeze: bad regex '\('"):
    optim.create_optimizer(optim_config(freeze=("(",)), 10)


def test_weight_average_is_the_debiased_moving_average_of_the_weights():
  decay = 0.8
  tx = optax.chain(optax.sgd(0.1), optim.average_params(decay))
  params = {"w": jnp.arange(3.0), "b": jnp.ones([])}
  state = tx.init(params)
  # No step yet: the weights themselves.
  assert optim.evaluation_params(params, state) is not params
  jax.tree.map(np.testing.assert_array_equal,
               optim.evaluation_params(params, state), params)
  rng = np.random.default_rng(0)
  trajectory = []
  update = jax.jit(tx.update)
  for _ in range(6):
    grads = jax.tree.map(
        lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
    trajectory.append(jax.tree.map(np.asarray, params))
  t = len(trajectory)
  weights = [(1 - decay) * decay**(t - 1 - i) for i in range(t)]
  for key in params:
    want = sum(w * p[key] for w, p in zip(weights, trajectory)) / sum(weights)
    assert_float32_close(optim.evaluation_params(params, state)[key], want)
  # Without an average in the state: the weights as they are.
  assert optim.evaluation_params(params, optax.sgd(0.1).init(params)) is params


def test_create_optimizer_appends_the_average_only_when_asked():
  c = base_config.get_config().optim
  params = {"w": jnp.ones([2])}
  leaves = lambda s: [x for x in jax.tree.leaves(
      s, is_leaf=lambda x: isinstance(x, optim.AverageState))
                      if isinstance(x, optim.AverageState)]
  assert not leaves(optim.create_optimizer(c, 10).init(params))
  c.ema_decay = 0.99
  assert len(leaves(optim.create_optimizer(c, 10).init(params))) == 1
