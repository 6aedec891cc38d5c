"""Training and evaluation for any registered task.

`train_and_evaluate(config, workdir)` is the whole job: it resumes from the
newest checkpoint in `workdir` if there is one, trains to config.train.steps,
evaluates, checkpoints and samples at the configured intervals. The step
functions are pure and jitted with the state donated. The run directory's
files are `rnnlab.rundir`'s, the data-parallel placement `rnnlab.sharding`'s;
nothing in the library imports this module, only the commands do.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import pathlib
import signal
import threading
import time
from typing import Any, Callable

from absl import logging
from flax.training import train_state
import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from rnnlab import checkpoint
from rnnlab import config_check
from rnnlab import implementation_choice
from rnnlab import metrics as metrics_lib
from rnnlab import models
from rnnlab import optim
from rnnlab import rundir
from rnnlab import sharding
from rnnlab import tasks
from rnnlab import transfer
from rnnlab.errors import Preempted, TrainingDiverged
from rnnlab.errors import CheckpointReadError, UserError
from rnnlab.native import autotune

TrainState = train_state.TrainState


def train_step(state: TrainState, batch, rng: jax.Array, carry=None, *,
               loss_fn: Callable, schedule: optax.Schedule,
               optim_config: ml_collections.ConfigDict | None = None,
               skip_nonfinite: bool = False,
               token_ids_fn: Callable | None = None):
  """One optimizer step: (state, metrics, carry).

  `carry` is the state carried between batches (truncated BPTT); then
  `loss_fn(params, batch, rng, carry)` returns (loss, (metrics, carry)),
  otherwise `loss_fn(params, batch, rng)` returns (loss, metrics). The
  dropout RNG is folded from the step, so a resumed run draws the same
  randomness as an uninterrupted one. With `skip_nonfinite`, a step whose
  loss, gradient or updated parameters are not finite leaves parameters,
  optimizer state and carry unchanged (the step counter still advances).
  """
  step_rng = jax.random.fold_in(rng, state.step)
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  if carry is None:
    (loss, aux), grads = grad_fn(state.params, batch, step_rng)
    new_carry = None
  else:
    (loss, (aux, new_carry)), grads = grad_fn(state.params, batch, step_rng,
                                              carry)
  grad_norm = optax.tree.norm(grads)  # before clipping
  extra = {} if token_ids_fn is None else {"token_ids": token_ids_fn(batch)}
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params,
                                       **extra)
  params = optax.apply_updates(state.params, updates)
  param_norm = optax.tree.norm(params)
  # Checking the new parameters too catches a bad update in the step that
  # made it, before it can reach a checkpoint.
  finite = (jnp.isfinite(loss) & jnp.isfinite(grad_norm) &
            jnp.isfinite(param_norm))
  if skip_nonfinite:
    keep = functools.partial(jax.tree.map,
                             lambda new, old: jnp.where(finite, new, old))
    params, opt_state = keep(params, state.params), keep(opt_state,
                                                        state.opt_state)
    if carry is not None:
      new_carry = keep(new_carry, carry)
  new_state = state.replace(step=state.step + 1, params=params,
                            opt_state=opt_state)
  metrics = {
      "loss": loss,
      "grad_norm": grad_norm,
      "nonfinite": (~finite).astype(jnp.float32),
      "param_norm": param_norm,
      "learning_rate": schedule(state.step) * optim.lr_scale(state.opt_state),
      **aux,
  }
  if optim_config is not None:
    metrics["clipped"] = optim.clip_fired(grads, optim_config).astype(
        jnp.float32)
  return new_state, metrics, new_carry


def init_params(model, init_inputs: tuple[Any, ...], seed: int):
  """Initialises parameters, logging their count before allocating them."""
  rng = jax.random.key(seed)
  init = functools.partial(model.init, train=False)
  shapes = jax.eval_shape(init, rng, *init_inputs)["params"]
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
  logging.info("Model %s: %s parameters.", type(model).__name__, f"{count:,}")
  return init(rng, *init_inputs)["params"]


def create_train_state(model, init_inputs, config,
                       steps_per_epoch: int | None = None
                       ) -> tuple[TrainState, optax.Schedule]:
  params = init_params(model, init_inputs, config.seed)
  tx = optim.create_optimizer(config.optim, config.train.steps,
                              steps_per_epoch)
  schedule = optim.create_schedule(config.optim, config.train.steps,
                                   steps_per_epoch)
  state = TrainState.create(apply_fn=model.apply, params=params, tx=tx)
  return state, schedule


def make_train_step(loss_fn: Callable, schedule: optax.Schedule,
                    mesh: Mesh | None = None, **options):
  """`train_step` for this loss, jitted with the state donated; `options`
  are train_step's keyword arguments.

  With a `mesh`, the step is data parallel: jit gets explicit shardings,
  the state replicated and every batch (and carried state) array split on
  its first axis over the mesh's "data" axis; XLA inserts the gradient
  all-reduce. The shardings are fixed at the first call, from its batch.
  """
  step = functools.partial(train_step, loss_fn=loss_fn, schedule=schedule,
                           **options)
  if mesh is None:
    return jax.jit(step, donate_argnums=0)
  replicated = NamedSharding(mesh, P())
  jitted = {}

  def for_batch(batch, carry):
    if "step" not in jitted:
      batch_shardings = sharding.batch_sharding(mesh, batch)
      carry_shardings = sharding.batch_sharding(mesh, carry)
      jitted["step"] = jax.jit(
          step, donate_argnums=0,
          in_shardings=(replicated, batch_shardings, replicated,
                        carry_shardings),
          out_shardings=(replicated, replicated, carry_shardings))
    return jitted["step"]

  def run(state, batch, rng, carry=None):
    return for_batch(batch, carry)(state, batch, rng, carry)

  run.lower = lambda state, batch, rng, carry=None: for_batch(  # like jit's
      batch, carry).lower(state, batch, rng, carry)
  return run


def task_train_step(config, task, schedule, mesh: Mesh | None = None,
                    stateful: bool = False):
  """`make_train_step` for `task`'s loss and the config's step options."""
  return make_train_step(
      task.stateful_loss_fn if stateful else task.loss_fn, schedule, mesh,
      optim_config=config.optim,
      skip_nonfinite=config.train.on_nonfinite == "skip",
      token_ids_fn=task.token_ids)


def _mean_metrics(history: list[dict[str, Any]]) -> dict[str, float]:
  """Means over the interval; skipped non-finite values are left out."""
  host = jax.device_get(sharding.local(history))
  means = {}
  for key in host[0]:
    values = np.asarray([h[key] for h in host], np.float64)
    finite = values[np.isfinite(values)]
    means[key] = float(finite.mean()) if finite.size else float("nan")
  return means


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
  rundir.append_sample(workdir, step, sample)
  writer.write_text(step, "sample", sample)


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str | pathlib.Path) -> dict[str, Any]:
  """Trains `config` in `workdir` (resuming if possible); returns results.

  The returned dict holds the final step, the metrics of every eval split,
  and the best evaluation so far (step and loss). <workdir>/status.json says
  running, done, diverged, failed, read_error (exit 75) or preempted.

  Preemption: on SIGTERM the run finishes its current step, saves a
  checkpoint there (carried state and early-stopping counters included),
  waits for it, sets status "preempted" and raises `Preempted`; calling this
  again resumes, ending bitwise where an uninterrupted run would (CPU).
  """
  began = time.monotonic()
  workdir = pathlib.Path(workdir)
  config_check.validate(config)
  rundir.prepare_workdir(workdir, config)
  rundir.set_status(workdir, "running")
  try:
    with _preemption_notice() as preempted:
      results = _train(config, workdir, preempted,
                       _time_limit(config, began))
  except TrainingDiverged as e:
    rundir.set_status(workdir, "diverged", error=str(e))
    raise
  except Preempted as e:
    rundir.set_status(workdir, "preempted", step=e.step)
    raise
  except CheckpointReadError as e:  # nothing changed on disk; rerun resumes
    rundir.set_status(workdir, "read_error", error=str(e))
    raise
  except BaseException as e:
    rundir.set_status(workdir, "failed", error=f"{type(e).__name__}: {e}")
    raise
  rundir.set_status(workdir, "done", **results)
  return results


def _time_limit(config, began: float) -> Callable[[int], bool]:
  """`out_of_time(step) -> bool`, asked after every training step: whether
  train.max_seconds have passed since `began` (time.monotonic()). With
  several processes, process 0's clock decides, at log_every boundaries
  only (a broadcast each step would cost more than the steps)."""
  limit = config.train.max_seconds
  if not limit:
    return lambda step: False
  if jax.process_count() == 1:
    return lambda step: time.monotonic() - began > limit

  def synced(step):
    if step % config.train.log_every:
      return False
    return bool(multihost_utils.broadcast_one_to_all(
        np.array(time.monotonic() - began > limit)))
  return synced


@contextlib.contextmanager
def _preemption_notice():
  """Yields `preempted(step) -> bool`, asked after every training step:
  whether to save at `step` and stop.

  One process: a SIGTERM handler sets a flag (installed only in the main
  thread, the only one Python lets set handlers; the previous handler is
  restored on exit). Several processes: JAX's coordination service already
  catches SIGTERM (a Python handler would replace its own) and picks a step
  every process reaches, so they all save the same one.
  """
  if jax.process_count() > 1:
    def synced(step):
      try:
        return multihost_utils.reached_preemption_sync_point(step)
      except RuntimeError:  # jax_enable_preemption_service is off
        return False
    yield synced
    return
  if threading.current_thread() is not threading.main_thread():
    yield lambda step: False
    return
  flag = threading.Event()
  previous = signal.signal(signal.SIGTERM, lambda signum, frame: flag.set())
  try:
    yield lambda step: flag.is_set()
  finally:
    # None: the previous handler was not set from Python; default is closest.
    signal.signal(signal.SIGTERM,
                  signal.SIG_DFL if previous is None else previous)


@dataclasses.dataclass
class EarlyStopping:
  """Tracks the best evaluation; `stop` once `patience` evaluations in a row
  failed to improve on it by more than `min_delta` (patience 0 = never).

  Saved in every checkpoint's metadata, so a resumed run keeps counting.
  """
  patience: int
  min_delta: float
  best_loss: float | None = None
  best_step: int | None = None
  bad_evals: int = 0
  stopped: bool = False

  def update(self, loss: float, step: int) -> bool:
    """Records an evaluation; returns whether it is the new best."""
    if self.best_loss is None or loss < self.best_loss - self.min_delta:
      self.best_loss, self.best_step, self.bad_evals = loss, step, 0
      return True
    self.bad_evals += 1
    self.stopped = 0 < self.patience <= self.bad_evals
    return False

  def to_json(self) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(self).items()
            if k not in ("patience", "min_delta")}

  @classmethod
  def create(cls, config, saved: dict[str, Any] | None = None):
    tracker = cls(config.train.patience, config.train.min_delta)
    for key, value in (saved or {}).items():
      setattr(tracker, key, value)
    return tracker


def _check_finite(metrics: dict[str, Any], step: int):
  """Raises TrainingDiverged if the step that made `metrics` (1-based
  `step`) had a non-finite loss or gradient."""
  metrics = sharding.local(metrics)
  if float(metrics["nonfinite"]) > 0:
    raise TrainingDiverged(
        f"Non-finite loss ({float(metrics['loss'])}), gradient norm "
        f"({float(metrics['grad_norm'])}) or parameter norm "
        f"({float(metrics['param_norm'])}) at step {step}. The last good "
        "checkpoint is kept; lower optim.learning_rate, tighten "
        "optim.clip_norm, or set train.on_nonfinite='skip' to skip such "
        "steps.")


def _restore_or_init(config, workdir, task, state, carry, ckpt):
  """Resumes from the newest checkpoint, else starts from config.init_from
  (if set), else keeps the fresh state. Returns (state, carry, meta).

  Damaged newer checkpoints are set aside for the newest good one; a
  directory with checkpoints but none good raises CheckpointError."""
  restored = ckpt.restore_latest(state.params, state.opt_state,
                                 train_carry_template=carry)
  if restored is not None:
    step, params, opt_state, meta, saved_carry = restored
    state = state.replace(step=jnp.asarray(step, jnp.int32), params=params,
                          opt_state=opt_state)
    logging.info("Resumed from %s at step %d.", ckpt.directory, step)
    return state, saved_carry, meta
  if config.init_from:
    params, report = transfer.initialize_from(
        state.params, config.init_from, vocab=getattr(task, "vocab", None))
    logging.info("%s", report.summary())
    if jax.process_index() == 0:
      metrics_lib.write_json(workdir / "init_from.json", report.to_dict())
    # A fresh optimizer state for the new parameters (same shapes).
    state = state.replace(params=params, opt_state=state.tx.init(params))
  return state, carry, {}


def _candidate_step(config, schedule, task, mesh, stateful: bool):
  """The training step implementation_choice times for each candidate."""
  return task_train_step(config, task, schedule, mesh, stateful)


def choose_for_config(config) -> autotune.Choice:
  """`implementation_choice.choose` for a config alone (the task built, the state
  fresh): what its training run would run, timed and cached now."""
  config_check.validate(config)
  task = tasks.create_task(config)
  state, schedule = create_train_state(task.model, task.init_inputs(),
                                       config, task.steps_per_epoch())
  return implementation_choice.choose(
      config, task, state, task.initial_train_carry(),
      functools.partial(_candidate_step, config, schedule))


def _train(config, workdir: pathlib.Path,
           preempted: Callable[[int], bool] = lambda step: False,
           out_of_time: Callable[[int], bool] = lambda step: False
           ) -> dict[str, Any]:
  task = tasks.create_task(config)
  task.save_metadata(workdir)
  state, schedule = create_train_state(task.model, task.init_inputs(),
                                       config, task.steps_per_epoch())
  carry = task.initial_train_carry()
  choice = implementation_choice.choose(
      config, task, state, carry,
      functools.partial(_candidate_step, config, schedule), workdir)
  if choice.choice != config.model.implementation:
    task = task.with_model(models.with_implementation(task.model,
                                                      choice.choice))
  if jax.process_index() == 0:  # for reports comparing runs, and resuming
    metrics_lib.write_json(workdir / rundir.MODEL_FILE, {
        "model": type(task.model).__name__,
        "devices": jax.device_count(), "processes": jax.process_count(),
        "parameters": sum(int(np.prod(x.shape))
                          for x in jax.tree.leaves(state.params)),
        "implementation": {"requested": config.model.implementation,
                           **choice.to_json()}})
  ckpt = checkpoint.Checkpointer(workdir / rundir.CHECKPOINT_DIR,
                                 config.train.max_to_keep)
  best_ckpt = checkpoint.Checkpointer(workdir / rundir.BEST_DIR, 1)
  # Let pending async saves land, also when the run stops with an error:
  # the last good checkpoint must be complete.
  try:
    results = _train_loop(config, workdir, task, state, schedule, carry,
                          ckpt, best_ckpt, preempted, out_of_time)
  except BaseException:
    _close_all(ckpt, best_ckpt, report=False)  # the loop's error wins
    raise
  _close_all(ckpt, best_ckpt, report=True)
  return results


def _close_all(*checkpointers, report: bool):
  """Closes every checkpointer even if one fails (a full disk fails both);
  raises the first failure (the latest checkpoint's) if `report`, else only
  logs them."""
  errors = []
  for c in checkpointers:
    try:
      c.close()
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)
      logging.error("Closing %s: %s", c.directory, e)
  if errors and report:
    raise errors[0]


def _train_loop(config, workdir, task, state, schedule, carry, ckpt,
                best_ckpt, preempted, out_of_time) -> dict[str, Any]:
  mesh = sharding.make_mesh()
  if config.train.batch_size % mesh.size:
    raise UserError(
        f"train.batch_size={config.train.batch_size} must be a multiple of "
        f"the {mesh.size} devices (data parallelism splits the batch).")
  # On the mesh before restoring: the templates' shardings tell Orbax where
  # each process's restored arrays go (replicated state, split carry).
  replicated = NamedSharding(mesh, P())
  state = jax.device_put(state, replicated)
  if carry is not None:
    carry = jax.device_put(carry, sharding.batch_sharding(mesh, carry))
  state, carry, meta = _restore_or_init(config, workdir, task, state, carry,
                                        ckpt)
  # The step counter and init_from's params.
  state = sharding.on_mesh(state, replicated)
  tracker = EarlyStopping.create(config, meta.get("early_stopping"))
  start = int(sharding.local(state.step))
  rundir.forget_after(start, workdir, best_ckpt)
  skip = config.train.on_nonfinite == "skip"
  step_fn = task_train_step(config, task, schedule, mesh, carry is not None)
  rng = jax.random.key(config.seed)
  rows = sharding.process_rows(config.train.batch_size)  # this process's share
  writer = metrics_lib.MetricWriter(workdir, purge_step=start + 1 if start
                                    else None)
  total = config.train.steps
  tokens_per_step = task.tokens_per_batch()

  def save(done, target=ckpt):
    # best/ holds the weights as evaluated (the average, if optim.ema_decay
    # keeps one); the latest checkpoint the trained ones, to resume from.
    params = (optim.evaluation_params(state.params, state.opt_state)
              if target is best_ckpt else state.params)
    target.save(done, params, state.opt_state,
                {"step": done, "early_stopping": tracker.to_json()}, carry)

  def evaluated_params():
    return sharding.local(optim.evaluation_params(state.params,
                                                  state.opt_state))

  profiler = _StepProfiler(workdir / "profile", start,
                           config.train.profile_steps)
  progress = _progress_bar(config, start, total)
  history, eval_results, skipped, time_limited = [], {}, 0, False
  # Throughput over each log interval, excluding compile, eval, sampling
  # and checkpoint time.
  mark, excluded = time.perf_counter(), 0.0
  for step in range(start, total if not tracker.stopped else start):
    profiler.before(step, history)
    state, step_metrics, carry = step_fn(
        state, sharding.shard_batch(mesh, task.train_batch(step, rows)), rng,
        carry)
    if history:
      # Keep at most one step in flight, so the progress bar and the host's
      # batch preparation keep pace with the device instead of queueing.
      jax.block_until_ready(history[-1])
      if not skip:
        _check_finite(history[-1], step)
    history.append(step_metrics)
    done = step + 1
    # train.max_seconds: end here as if this were the last step.
    time_limited = done < total and out_of_time(done)
    last = done == total or time_limited
    if step == start:
      jax.block_until_ready(step_metrics)
      # Its wall_seconds is the time to the first step as a user waits
      # for it: imports, data, implementation choice and compilation.
      writer.write(done, "compile", {"seconds": time.perf_counter() - mark})
      if not skip:
        _check_finite(step_metrics, done)
      history, mark, excluded = [], time.perf_counter(), 0.0
    elif done % config.train.log_every == 0 or last:
      summary = _mean_metrics(history)
      skipped += round(summary["nonfinite"] * len(history))
      if skip and summary["nonfinite"]:
        logging.warning("Skipped %d non-finite steps so far (step %d).",
                        skipped, done)
      elapsed = time.perf_counter() - mark - excluded
      summary["steps_per_second"] = len(history) / elapsed
      summary["tokens_per_second"] = len(history) * tokens_per_step / elapsed
      writer.write(done, "train", summary)
      progress.set_postfix(loss=f"{summary['loss']:.3f}",
                           tok_s=f"{summary['tokens_per_second']:,.0f}")
      history, mark, excluded = [], time.perf_counter(), 0.0
    progress.update(1)

    other_start = time.perf_counter()
    evaluating = done % config.train.eval_every == 0 or last
    saving = done % config.train.checkpoint_every == 0 or last
    if (evaluating or saving) and not skip:
      _check_finite(step_metrics, done)  # never evaluate or save NaNs
    if evaluating:
      eval_results = _evaluate_all(task, evaluated_params(), done, writer)
      monitored = eval_results[task.eval_splits[0]]["loss"]
      state = state.replace(opt_state=optim.report_validation(
          state.opt_state, monitored, config.optim))
      if tracker.update(monitored, done):
        save(done, best_ckpt)
      elif tracker.stopped:
        logging.info("Early stopping at step %d: no improvement on %s loss "
                     "%.4f (step %d) in %d evaluations.", done,
                     task.eval_splits[0], tracker.best_loss,
                     tracker.best_step, tracker.bad_evals)
        saving = True
    if config.train.sample_every and (done % config.train.sample_every == 0
                                      or last):
      _write_sample(task, evaluated_params(), done, workdir, writer)
    if saving:
      save(done)
    excluded += time.perf_counter() - other_start
    # Asked after every step: with several processes each must ask each step.
    if preempted(done) and done < total and not tracker.stopped:
      if not saving:
        if not skip:
          _check_finite(step_metrics, done)  # never save NaNs
        save(done)
      ckpt.wait()  # the status must not say preempted before the step lands
      best_ckpt.wait()
      profiler.stop(history)
      progress.close()
      writer.close()
      logging.warning("Preempted: saved step %d in %s; rerun to resume.",
                      done, ckpt.directory)
      raise Preempted(done)
    if tracker.stopped:
      break
    if time_limited:
      logging.warning("train.max_seconds=%g reached at step %d of %d: "
                      "evaluated and saved; rerun to resume.",
                      config.train.max_seconds, done, total)
      break
  profiler.stop(history)
  progress.close()

  final = int(sharding.local(state.step))
  if start >= total or (start == final and tracker.stopped):
    logging.info("Checkpoint step %d: nothing to train (train.steps=%d%s).",
                 start, total, ", stopped early" if tracker.stopped else "")
    eval_results = _evaluate_all(task, evaluated_params(), start, writer)
  writer.close()
  ckpt.wait()
  best_ckpt.wait()  # reports may read the best checkpoint
  if jax.process_index() == 0:
    metrics_lib.plot_curves(workdir)
    task.write_reports(evaluated_params(), workdir)
  return {"step": final, "eval": eval_results,
          "best": {"step": tracker.best_step, "loss": tracker.best_loss},
          "stopped_early": tracker.stopped, "time_limited": time_limited,
          "skipped_steps": skipped}


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


def evaluate_checkpoint(config: ml_collections.ConfigDict | None,
                        workdir: str | pathlib.Path) -> dict[str, Any]:
  """Metrics of every eval split for the newest checkpoint; no training.
  Also rewrites the task's reports (e.g. attention heatmaps)."""
  workdir = pathlib.Path(workdir)
  if config is None:
    config = rundir.load_config(workdir)
    config_check.validate(config)  # its names too, as training does
  else:
    config_check.validate(config)
    rundir.saved_config(workdir)  # an rnnlab run directory
  task = tasks.create_task(config)
  task.save_metadata(workdir)  # raises if the saved vocabulary differs
  chosen = implementation_choice.run_choice(workdir)
  if config.model.implementation == "auto" and chosen:
    # Evaluate with what the run trained with.
    task = task.with_model(models.with_implementation(task.model, chosen))
  step, params = rundir.restore_params(task.model, task.init_inputs(),
                                       workdir)
  results = {split: task.evaluate(params, split)
             for split in task.eval_splits}
  if jax.process_index() == 0:  # run files have one writer, as in training
    task.write_reports(params, workdir)
  return {"step": step, "eval": results}
