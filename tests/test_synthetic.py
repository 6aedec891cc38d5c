"""Synthetic memory problems: generators, purity, evaluation, training."""
from __future__ import annotations

import jax
import numpy as np
import optax
import pytest

from rnnlab import config_check
from rnnlab import recipes
from rnnlab import tasks
from rnnlab import train
from rnnlab.data import synthetic as data
from rnnlab.errors import UserError
from tests.helpers import tiny_config


# On lstm_<problem>:runlocal (16 units, lag 10): a GRU in batches of 16 (the
# learning test's factors were set for these), held-out sets of 40 and 50.
SMALL = dict(model__cell="gru", train__batch_size=16, synthetic__num_val=40,
             synthetic__num_test=50)


def test_adding_batch_has_one_marker_per_half_and_target_is_their_sum():
  lag = 31  # odd: the halves are [0, 15) and [15, 31)
  batch = data.adding_batch(data.rng_for(0, 0), 500, lag)
  inputs, targets = batch["inputs"], batch["targets"]
  assert inputs.shape == (500, lag, 2) and inputs.dtype == np.float32
  assert targets.shape == (500,)
  values, markers = inputs[..., 0], inputs[..., 1]
  assert ((values >= 0) & (values < 1)).all()
  assert set(np.unique(markers)) == {0.0, 1.0}
  np.testing.assert_array_equal(markers[:, :lag // 2].sum(1), 1)
  np.testing.assert_array_equal(markers[:, lag // 2:].sum(1), 1)
  np.testing.assert_allclose(targets, (values * markers).sum(1), rtol=1e-6)
  # Both halves' positions are all used: markers are not pinned.
  assert (markers.sum(0) > 0).all()


def test_adding_baseline_of_predicting_one_is_a_sixth():
  targets = data.adding_batch(data.rng_for(1, 0), 100_000, 50)["targets"]
  assert np.mean((targets - 1.0) ** 2) == pytest.approx(
      data.ADDING_BASELINE_MSE, abs=3e-3)


def test_copy_memory_layout():
  s, lag, alphabet = 10, 7, 8
  batch = data.copy_memory_batch(data.rng_for(0, 0), 64, lag, s, alphabet)
  inputs, targets, mask = batch["inputs"], batch["targets"], batch["mask"]
  steps = 2 * s + lag + 1
  assert inputs.shape == targets.shape == mask.shape == (64, steps)
  symbols = inputs[:, :s]
  assert ((symbols >= 1) & (symbols <= alphabet)).all()
  assert len(np.unique(symbols)) == alphabet
  np.testing.assert_array_equal(inputs[:, s:s + lag], 0)  # blanks
  np.testing.assert_array_equal(inputs[:, s + lag], alphabet + 1)
  np.testing.assert_array_equal(inputs[:, s + lag + 1:], 0)
  np.testing.assert_array_equal(targets[:, -s:], symbols)
  np.testing.assert_array_equal(targets[:, :-s], 0)
  np.testing.assert_array_equal(mask, (np.arange(steps) >= steps - s)[None]
                                * np.ones((64, 1)))
  assert data.copy_memory_vocab(alphabet) == (alphabet + 2, alphabet + 1)


@pytest.mark.parametrize("problem", ["adding", "copy_memory"])
def test_batches_are_a_pure_function_of_seed_and_step(problem):
  c = tiny_config(f"lstm_{problem}", **SMALL)
  task, again = tasks.create_task(c), tasks.create_task(c)
  c1 = tiny_config(f"lstm_{problem}", **SMALL, seed=1)
  other_seed = tasks.create_task(c1)
  same = lambda a, b: all(np.array_equal(a[k], b[k]) for k in a)
  assert same(task.train_batch(5), again.train_batch(5))
  assert not same(task.train_batch(5), task.train_batch(6))
  assert not same(task.train_batch(5), other_seed.train_batch(5))
  val, test = task.eval_data("val"), task.eval_data("test")
  assert same(val, again.eval_data("val"))
  assert val["inputs"].shape[0] == 40 and test["inputs"].shape[0] == 50
  # Separate streams: the first val examples are no training batch's.
  assert not np.array_equal(np.asarray(val["inputs"][:16]),
                            task.train_batch(0)["inputs"])
  assert not np.array_equal(np.asarray(val["inputs"][:40]),
                            np.asarray(test["inputs"][:40]))


def test_evaluation_does_not_depend_on_the_eval_batch_size():
  c = tiny_config("lstm_copy_memory", **SMALL)
  task = tasks.create_task(c)
  params = task.model.init(jax.random.key(0), *task.init_inputs())["params"]
  whole = task.evaluate(params, "test")
  task.config.eval.batch_size = 7  # 50 = 7 * 7 + 1
  chunked = task.evaluate(params, "test")
  assert whole.keys() == chunked.keys() >= {
      "loss", "accuracy", "sequence_accuracy", "solved"}
  for k in whole:
    assert chunked[k] == pytest.approx(whole[k], rel=1e-5)
  # An untrained model: about chance on the recalled symbols, not solved.
  assert whole["accuracy"] < 0.5 and whole["solved"] == 0.0


@pytest.mark.parametrize("problem,factor", [("adding", 0.5),
                                            ("copy_memory", 0.95)])
def test_a_few_dozen_steps_lower_the_held_out_loss(problem, factor):
  c = tiny_config(f"lstm_{problem}", **SMALL)
  task = tasks.create_task(c)
  params = task.model.init(jax.random.key(0), *task.init_inputs())["params"]
  tx = optax.adam(1e-2)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, batch, rng):
    (loss, _), grads = jax.value_and_grad(task.loss_fn, has_aux=True)(
        params, batch, rng)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  before = task.evaluate(params, "val")["loss"]
  for i in range(40):
    params, opt_state, _ = step(params, opt_state, task.train_batch(i),
                                jax.random.key(i))
  after = task.evaluate(params, "val")["loss"]
  # adding: from ~1 (outputs near 0) to below half that in 40 steps;
  # copy_memory: the blanks-vs-symbols structure is learned first.
  assert after < factor * before, (before, after)


def test_train_and_evaluate_end_to_end(tmp_path):
  c = tiny_config("lstm_adding", model__cell="rnn")
  results = train.train_and_evaluate(c, tmp_path)
  assert results["step"] == c.train.steps
  test = results["eval"]["test"]
  assert test["examples"] == c.synthetic.num_test
  assert test["loss"] == test["mse"] and np.isfinite(test["mse"])
  assert (tmp_path / "status.json").exists()


def test_config_args_and_bad_names():
  c = recipes.synthetic_config("copy_memory", "cell=rnn,lag=37")
  assert (c.model.cell, c.synthetic.lag, c.task) == ("rnn", 37, "synthetic")
  assert recipes.synthetic_config("adding", "").model.cell == "lstm"
  with pytest.raises(UserError, match="Unknown config arg key 'cel'"):
    recipes.synthetic_config("adding", "cel=rnn")
  with pytest.raises(UserError, match="Unknown cell 'gur'.*'gru'"):
    recipes.synthetic_config("adding", "cell=gur")
  with pytest.raises(UserError, match="lag='-3' must be a positive"):
    recipes.synthetic_config("adding", "lag=-3")
  bad = tiny_config("lstm_adding")
  bad.synthetic.problem = "addition"
  with pytest.raises(UserError, match="Unknown synthetic problem.*'adding'"):
    config_check.validate(bad)
  bad = tiny_config("lstm_adding")
  bad.model.name = "rnn_lm"
  with pytest.raises(UserError, match="model.name='sequence'"):
    config_check.validate(bad)
  bad = tiny_config("lstm_adding", synthetic__lag=1)
  with pytest.raises(UserError, match="synthetic.lag >= 2"):
    config_check.validate(bad)
