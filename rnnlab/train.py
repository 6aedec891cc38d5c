"""Training and evaluation for any registered task.

`train_and_evaluate(config, workdir)` is the whole job: it resumes from the
newest checkpoint in `workdir` if there is one, trains to config.train.steps,
evaluates, checkpoints and samples at the configured intervals. The step
functions are pure and jitted with the state donated.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
import time
from typing import Any, Callable

from absl import logging
from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from rnnlab import base_config
from rnnlab import checkpoint
from rnnlab import metrics as metrics_lib
from rnnlab import models
from rnnlab import optim
from rnnlab import tasks
from rnnlab.data import text
from rnnlab.errors import CheckpointError, UserError
from rnnlab.tasks import char_lm

TrainState = train_state.TrainState
CHECKPOINT_DIR = "checkpoints"


def train_step(state: TrainState, batch, rng: jax.Array, *,
               loss_fn: Callable, schedule: optax.Schedule):
  """One optimizer step. Returns the new state and scalar metrics.

  The dropout RNG is folded from the step, so a resumed run draws the same
  randomness as an uninterrupted one.
  """
  step_rng = jax.random.fold_in(rng, state.step)
  (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params, batch, step_rng)
  new_state = state.apply_gradients(grads=grads)
  metrics = {
      "loss": loss,
      "grad_norm": optax.tree.norm(grads),  # before clipping
      "param_norm": optax.tree.norm(new_state.params),
      "learning_rate": schedule(state.step),
      **aux,
  }
  return new_state, metrics


def init_params(model, init_inputs: tuple[Any, ...], seed: int):
  """Initialises parameters, logging their count before allocating them."""
  rng = jax.random.key(seed)
  init = functools.partial(model.init, train=False)
  shapes = jax.eval_shape(init, rng, *init_inputs)["params"]
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
  logging.info("Model %s: %s parameters.", type(model).__name__, f"{count:,}")
  return init(rng, *init_inputs)["params"]


def create_train_state(model, init_inputs, config
                       ) -> tuple[TrainState, optax.Schedule]:
  params = init_params(model, init_inputs, config.seed)
  tx = optim.create_optimizer(config.optim, config.train.steps)
  schedule = optim.create_schedule(config.optim, config.train.steps)
  state = TrainState.create(apply_fn=model.apply, params=params, tx=tx)
  return state, schedule


def make_train_step(loss_fn: Callable, schedule: optax.Schedule):
  """`train_step` for this loss, jitted with the state donated."""
  return jax.jit(functools.partial(train_step, loss_fn=loss_fn,
                                   schedule=schedule), donate_argnums=0)


def _prepare_workdir(workdir: pathlib.Path, config) -> None:
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    probe = workdir / ".write_test"
    probe.write_text("ok")
    probe.unlink()
  except OSError as e:
    raise UserError(f"Cannot write to workdir {workdir}: {e}") from None
  if jax.process_index() == 0:
    metrics_lib.write_json(workdir / "config.json", json.loads(
        config.to_json_best_effort()))
    metrics_lib.write_json(workdir / "provenance.json",
                           metrics_lib.provenance())


def _set_status(workdir: pathlib.Path, status: str, **fields):
  if jax.process_index() == 0:
    metrics_lib.write_json(workdir / "status.json",
                           {"status": status, **fields})


def _mean_metrics(history: list[dict[str, Any]]) -> dict[str, float]:
  host = jax.device_get(history)
  return {k: float(np.mean([h[k] for h in host])) for k in host[0]}


def _evaluate_all(task, params, step, writer) -> dict[str, dict[str, float]]:
  results = {}
  for split in task.eval_splits:
    t0 = time.perf_counter()
    results[split] = task.evaluate(params, split)
    results[split]["eval_seconds"] = time.perf_counter() - t0
    writer.write(step, split, results[split])
    logging.info("step %d %s: %s", step, split, _fmt(results[split]))
  return results


def _fmt(metrics: dict[str, float]) -> str:
  return ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())


def _write_sample(task, params, step, workdir, writer):
  sample = task.periodic_output(params, step)
  if sample is None or jax.process_index() != 0:
    return
  with (workdir / "samples.txt").open("a", encoding="utf-8") as f:
    f.write(f"=== step {step} ===\n{sample}\n\n")
  writer.write_text(step, "sample", sample)


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str | pathlib.Path) -> dict[str, Any]:
  """Trains `config` in `workdir` (resuming if possible); returns results.

  The returned dict holds the final step and the metrics of every eval split.
  """
  workdir = pathlib.Path(workdir)
  base_config.validate(config)
  _prepare_workdir(workdir, config)
  _set_status(workdir, "running")
  try:
    results = _train(config, workdir)
  except BaseException as e:
    _set_status(workdir, "failed", error=f"{type(e).__name__}: {e}")
    raise
  _set_status(workdir, "done", **results)
  return results


def _train(config, workdir: pathlib.Path) -> dict[str, Any]:
  task = tasks.create_task(config)
  task.save_metadata(workdir)
  state, schedule = create_train_state(task.model, task.init_inputs(),
                                       config)
  ckpt = checkpoint.Checkpointer(workdir / CHECKPOINT_DIR,
                                 config.train.max_to_keep)
  if ckpt.latest_step() is not None:
    step, params, opt_state, _ = ckpt.restore(state.params, state.opt_state)
    state = state.replace(step=jnp.asarray(step, jnp.int32), params=params,
                          opt_state=opt_state)
    logging.info("Resumed from %s at step %d.", ckpt.directory, step)
  start = int(state.step)

  step_fn = make_train_step(task.loss_fn, schedule)
  rng = jax.random.key(config.seed)
  writer = metrics_lib.MetricWriter(workdir)
  total = config.train.steps
  tokens_per_step = task.tokens_per_batch()

  profiler = _StepProfiler(workdir / "profile", start,
                           config.train.profile_steps)
  progress = _progress_bar(config, start, total)
  history, eval_results = [], {}
  # Throughput over each log interval, excluding compile, eval, sampling
  # and checkpoint time.
  mark, excluded = time.perf_counter(), 0.0
  for step in range(start, total):
    profiler.before(step, history)
    state, step_metrics = step_fn(state, task.train_batch(step), rng)
    if history:
      # Keep at most one step in flight, so the progress bar and the host's
      # batch preparation keep pace with the device instead of queueing.
      jax.block_until_ready(history[-1])
    history.append(step_metrics)
    done = step + 1
    if step == start:
      jax.block_until_ready(step_metrics)
      writer.write(done, "compile", {"seconds": time.perf_counter() - mark})
      history, mark, excluded = [], time.perf_counter(), 0.0
    elif done % config.train.log_every == 0 or done == total:
      summary = _mean_metrics(history)
      if not math.isfinite(summary["loss"]):
        raise FloatingPointError(
            f"Non-finite training loss ({summary['loss']}) in the "
            f"{len(history)} steps up to step {done}.")
      elapsed = time.perf_counter() - mark - excluded
      summary["steps_per_second"] = len(history) / elapsed
      summary["tokens_per_second"] = len(history) * tokens_per_step / elapsed
      writer.write(done, "train", summary)
      progress.set_postfix(loss=f"{summary['loss']:.3f}",
                           tok_s=f"{summary['tokens_per_second']:,.0f}")
      history, mark, excluded = [], time.perf_counter(), 0.0
    progress.update(1)

    other_start = time.perf_counter()
    if done % config.train.eval_every == 0 or done == total:
      eval_results = _evaluate_all(task, state.params, done, writer)
    if config.train.sample_every and (done % config.train.sample_every == 0
                                      or done == total):
      _write_sample(task, state.params, done, workdir, writer)
    if done % config.train.checkpoint_every == 0 or done == total:
      ckpt.save(done, state.params, state.opt_state, {"step": done})
    excluded += time.perf_counter() - other_start
  profiler.stop(history)
  progress.close()

  if start >= total:
    logging.info("Checkpoint step %d >= train.steps=%d: nothing to train.",
                 start, total)
    eval_results = _evaluate_all(task, state.params, start, writer)
  ckpt.close()
  writer.close()
  if jax.process_index() == 0:
    metrics_lib.plot_curves(workdir)
    task.write_reports(state.params, workdir)
  return {"step": max(start, total), "eval": eval_results}


class _StepProfiler:
  """Writes a JAX profiler trace of `num_steps` training steps.

  The trace starts a few steps after (re)start, so compilation is not in it;
  open it with TensorBoard's profile plugin, XProf or Perfetto, or summarise
  it with `python -m benchmarks.step_breakdown --trace=<dir>`.
  """

  SKIP = 3

  def __init__(self, directory: pathlib.Path, start: int, num_steps: int):
    self.directory, self.num_steps = directory, num_steps
    self.first = start + self.SKIP if num_steps else -1
    self.active = False

  def before(self, step: int, pending):
    if step == self.first:
      jax.block_until_ready(pending)
      jax.profiler.start_trace(str(self.directory))
      self.active = True
    elif step == self.first + self.num_steps:
      self.stop(pending)

  def stop(self, pending):
    if self.active:
      jax.block_until_ready(pending)
      jax.profiler.stop_trace()
      self.active = False
      logging.info("Wrote a profile of %d steps to %s.", self.num_steps,
                   self.directory)


def _progress_bar(config, start: int, total: int):
  import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm.tqdm(total=total, initial=start, unit="step", dynamic_ncols=True,
                   disable=not config.train.progress_bar or
                   jax.process_index() != 0)


@dataclasses.dataclass
class InferenceRun:
  """What evaluation and sampling need from a trained workdir."""
  config: ml_collections.ConfigDict
  model: Any
  params: Any
  vocab: text.Vocab
  step: int


def load_config(workdir: pathlib.Path) -> ml_collections.ConfigDict:
  path = pathlib.Path(workdir) / "config.json"
  if not path.exists():
    raise CheckpointError(f"No config.json in {workdir}: not an rnnlab run "
                          "directory (train there first).")
  return base_config.from_saved(metrics_lib.read_json(path))


def load_run_for_inference(workdir: pathlib.Path) -> InferenceRun:
  """Loads config, vocabulary and the newest params from `workdir`.

  Reads only JSON (config, vocab) and Orbax arrays; the corpus is not needed.
  """
  workdir = pathlib.Path(workdir)
  config = load_config(workdir)
  vocab_path = workdir / char_lm.VOCAB_FILE
  if not vocab_path.exists():
    raise CheckpointError(f"No {char_lm.VOCAB_FILE} in {workdir}.")
  vocab = text.Vocab.load(vocab_path)
  model = models.create_model(config.model, vocab_size=len(vocab))
  step, params = restore_params(model, (jnp.zeros((1, 1), jnp.int32),),
                                workdir)
  return InferenceRun(config, model, params, vocab, step)


def restore_params(model, init_inputs, workdir: pathlib.Path
                   ) -> tuple[int, Any]:
  """(step, params) of the newest checkpoint in `workdir`; `init_inputs`
  are example inputs of `model.init`, for the parameter shapes."""
  ckpt_dir = pathlib.Path(workdir) / CHECKPOINT_DIR
  if not ckpt_dir.is_dir():
    raise CheckpointError(f"No checkpoint in {workdir} (expected "
                          f"{ckpt_dir}).")
  template = jax.eval_shape(
      lambda key: model.init(key, *init_inputs), jax.random.key(0))["params"]
  return checkpoint.Checkpointer(ckpt_dir, read_only=True).restore_params(
      template)


def evaluate_checkpoint(config: ml_collections.ConfigDict | None,
                        workdir: str | pathlib.Path) -> dict[str, Any]:
  """Metrics of every eval split for the newest checkpoint; no training.
  Also rewrites the task's reports (e.g. attention heatmaps)."""
  workdir = pathlib.Path(workdir)
  config = config or load_config(workdir)
  task = tasks.create_task(config)
  if not (workdir / "config.json").exists():
    raise CheckpointError(f"No config.json in {workdir}: not an rnnlab run "
                          "directory (train there first).")
  task.save_metadata(workdir)  # raises if the saved vocabulary differs
  step, params = restore_params(task.model, task.init_inputs(), workdir)
  results = {split: task.evaluate(params, split)
             for split in task.eval_splits}
  task.write_reports(params, workdir)
  return {"step": step, "eval": results}
