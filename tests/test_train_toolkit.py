"""Training machinery: stateful truncated BPTT, non-finite steps, early
stopping and the best checkpoint."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rnnlab import checkpoint
from rnnlab import optim
from rnnlab import rundir
from rnnlab import sampling
from rnnlab import tasks
from rnnlab import train
from rnnlab.data import text
from rnnlab.errors import TrainingDiverged
from rnnlab.tasks import char_lm
from tests.helpers import tiny_lm_config


def test_stateful_chunks_continue_streams_and_reset_per_epoch():
  tokens = np.arange(1000, dtype=np.int32)  # token value = its position
  b, t = 4, 10
  chunks = text.stateful_chunks_per_epoch(len(tokens), b, t)
  assert chunks == (999 // b) // t - 1
  for step in range(2 * chunks):
    x, y, reset = text.stateful_chunks(tokens, b, t, seed=3, step=step)
    assert x.shape == y.shape == (b, t)
    np.testing.assert_array_equal(y, x + 1)  # next-token targets
    assert reset == (step % chunks == 0)
    if step % chunks:
      prev, _, _ = text.stateful_chunks(tokens, b, t, seed=3, step=step - 1)
      # Row b of this chunk starts right after row b of the previous one.
      np.testing.assert_array_equal(x[:, 0], prev[:, -1] + 1)
  # Streams are disjoint and in order; a pure function of (seed, step).
  x0, _, _ = text.stateful_chunks(tokens, b, t, seed=3, step=0)
  assert np.all(np.diff(x0[:, 0]) == 999 // b)
  again, _, _ = text.stateful_chunks(tokens, b, t, seed=3, step=0)
  np.testing.assert_array_equal(x0, again)
  with pytest.raises(ValueError, match="needs at least"):
    text.stateful_chunks_per_epoch(50, 4, 10)


def _stateful_task(**overrides):
  config = tiny_lm_config("lstm", train__order="stateful", **overrides)
  return config, tasks.create_task(config)


def test_stateful_loss_carries_the_state_and_resets_at_epoch_start(
    corpus_path):
  del corpus_path
  config, task = _stateful_task()
  state, _ = train.create_train_state(task.model, task.init_inputs(), config,
                                      task.steps_per_epoch())
  params, rng = state.params, jax.random.key(0)
  carry = task.initial_train_carry()
  b0, b1 = task.train_batch(0), task.train_batch(1)
  assert b0["reset"] and not b1["reset"]
  _, (_, carry) = task.stateful_loss_fn(params, b0, rng, carry)
  _, (_, carry) = task.stateful_loss_fn(params, b1, rng, carry)
  # Two chunks with the state carried = one pass over both (dropout is off).
  both = jnp.concatenate([b0["inputs"], b1["inputs"]], axis=1)
  _, expected = task.model.apply({"params": params}, both)
  jax.tree.map(lambda a, e: np.testing.assert_allclose(a, e, atol=1e-5),
               carry, expected)
  # At the next epoch's first chunk the carried state is discarded.
  first = task.train_batch(task.steps_per_epoch())
  assert first["reset"]
  _, (_, after) = task.stateful_loss_fn(params, first, rng, carry)
  _, fresh = task.model.apply({"params": params}, jnp.asarray(first["inputs"]))
  jax.tree.map(lambda a, e: np.testing.assert_allclose(a, e, atol=1e-5),
               after, fresh)
  # And a carried state changes the loss (it is used, not ignored).
  loss_zero, _ = task.stateful_loss_fn(
      params, {**b1, "reset": True}, rng, carry)
  loss_carried, _ = task.stateful_loss_fn(params, b1, rng, carry)
  assert abs(float(loss_zero) - float(loss_carried)) > 1e-4


def test_stateful_run_resumes_exactly(tmp_path, corpus_path):
  """The carried state is checkpointed: stop at 8, resume to 16 == 16."""
  del corpus_path
  overrides = dict(train__order="stateful", train__checkpoint_every=8,
                   train__eval_every=1000, train__batch_size=4)
  stopped, straight = tmp_path / "stopped", tmp_path / "straight"
  train.train_and_evaluate(tiny_lm_config(train__steps=8, **overrides),
                           stopped)
  train.train_and_evaluate(tiny_lm_config(train__steps=16, **overrides),
                           stopped)
  train.train_and_evaluate(tiny_lm_config(train__steps=16, **overrides),
                           straight)
  template = sampling.load_run_for_inference(straight).params
  a = checkpoint.Checkpointer(stopped / "checkpoints", read_only=True)
  b = checkpoint.Checkpointer(straight / "checkpoints", read_only=True)
  jax.tree.map(np.testing.assert_array_equal, a.restore_params(template)[1],
               b.restore_params(template)[1])


def _poison_update_at(monkeypatch, bad_step: int):
  """Makes the optimizer's update NaN at 0-based step `bad_step`."""
  real = optim.create_optimizer

  def create(*args, **kwargs):
    tx = real(*args, **kwargs)

    def init(params):
      return tx.init(params), jnp.zeros([], jnp.int32)

    def update(updates, state, params=None, **extra):
      inner, count = state
      updates, inner = tx.update(updates, inner, params, **extra)
      updates = jax.tree.map(
          lambda u: jnp.where(count == bad_step, jnp.nan, u), updates)
      return updates, (inner, count + 1)

    return optax.GradientTransformationExtraArgs(init, update)

  monkeypatch.setattr(optim, "create_optimizer", create)


def test_nonfinite_step_stops_run_and_keeps_last_good_checkpoint(
    tmp_path, monkeypatch, corpus_path):
  del corpus_path
  _poison_update_at(monkeypatch, bad_step=12)
  config = tiny_lm_config(train__steps=30, train__checkpoint_every=5,
                          train__eval_every=1000)
  with pytest.raises(TrainingDiverged, match=r"at step 13\b"):
    train.train_and_evaluate(config, tmp_path)
  status = json.loads((tmp_path / "status.json").read_text())
  assert status["status"] == "diverged" and "step 13" in status["error"]
  template = sampling.load_run_for_inference(tmp_path).params
  step, params = checkpoint.Checkpointer(
      tmp_path / "checkpoints", read_only=True).restore_params(template)
  assert step == 10
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))


def test_nonfinite_step_is_skipped_when_configured(tmp_path, monkeypatch,
                                                   corpus_path):
  del corpus_path
  # A NaN loss in the batch of step 12 only. (Poisoning the optimizer, as
  # above, would repeat: a skipped step also keeps the optimizer's counter.)
  real_batch = char_lm.CharLMTask.train_batch
  real_loss = char_lm.lm_loss
  monkeypatch.setattr(char_lm.CharLMTask, "train_batch",
                      lambda self, step, rows=None: {
                          **real_batch(self, step, rows),
                          "poison": step == 12})
  monkeypatch.setattr(char_lm, "lm_loss", lambda model, params, batch, rng: (
      real_loss(model, params, batch, rng)[0] +
      jnp.where(batch["poison"], jnp.nan, 0.0), {}))
  config = tiny_lm_config(train__steps=20, train__checkpoint_every=20,
                          train__eval_every=20, train__on_nonfinite="skip")
  results = train.train_and_evaluate(config, tmp_path)
  assert results["skipped_steps"] == 1
  assert np.isfinite(results["eval"]["val"]["loss"])
  assert json.loads((tmp_path / "status.json").read_text())["status"] == "done"


def test_early_stopping_keeps_best_checkpoint_and_stays_stopped(
    tmp_path, corpus_path):
  del corpus_path
  # min_delta so large that no evaluation after the first counts as better.
  config = tiny_lm_config(train__steps=40, train__eval_every=5,
                          train__checkpoint_every=20, train__patience=2,
                          train__min_delta=10.0)
  results = train.train_and_evaluate(config, tmp_path)
  assert results["stopped_early"] and results["step"] == 15
  assert results["best"]["step"] == 5
  best = checkpoint.Checkpointer(tmp_path / rundir.BEST_DIR, read_only=True)
  latest = checkpoint.Checkpointer(tmp_path / "checkpoints", read_only=True)
  assert best.latest_step() == 5 and latest.latest_step() == 15
  # A restart resumes from the latest step and does not train on.
  again = train.train_and_evaluate(config, tmp_path)
  assert again["step"] == 15 and again["stopped_early"]
  assert latest.latest_step() == 15


def test_best_checkpoint_follows_improvement(tmp_path, corpus_path):
  del corpus_path
  config = tiny_lm_config(train__steps=30, train__eval_every=10)
  results = train.train_and_evaluate(config, tmp_path)
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").open()]
  val = {r["step"]: r["loss"] for r in records if r["split"] == "val"}
  best_step = min(val, key=val.get)
  assert results["best"] == {"step": best_step, "loss": val[best_step]}
  assert checkpoint.Checkpointer(tmp_path / rundir.BEST_DIR,
                                 read_only=True).latest_step() == best_step


def test_train_log_has_clipping_and_learning_rate(tmp_path, corpus_path):
  del corpus_path
  config = tiny_lm_config(train__steps=10, train__log_every=3,
                          optim__clip_norm=1e-3)
  train.train_and_evaluate(config, tmp_path)
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").open()
             if json.loads(l)["split"] == "train"]
  # A tiny threshold: every step's gradient norm exceeds it.
  assert all(r["clipped"] == 1.0 and r["grad_norm"] > 1e-3 for r in records)
  assert all(r["learning_rate"] == pytest.approx(1e-2) for r in records)
