"""Which recurrent implementation `model.implementation="auto"` trains with.

The candidates (fused, scan, and the native kernels where they can run)
are timed on the run's real training step by `rnnlab.native.autotune`
(once per machine and shape, then cached); a resumed run keeps the choice
its model.json records. The trainer passes its step function in, so this
module sits below `rnnlab.train`.
"""
from __future__ import annotations

import hashlib
import pathlib
import time
from typing import Any, Callable

from absl import logging
import jax
from jax.sharding import NamedSharding, PartitionSpec as P
import jax.numpy as jnp
import numpy as np

from rnnlab import distributed
from rnnlab import metrics as metrics_lib
from rnnlab import models
from rnnlab import rundir
from rnnlab import sharding
from rnnlab.errors import UserError
from rnnlab.models import implementations
from rnnlab.models import layers
from rnnlab.native import autotune
from rnnlab.native import build as native_build
from rnnlab.native import recurrence


def _runnable_here(implementation: str) -> str | None:
  """Why `implementation` cannot run (as chosen) here, or None."""
  if not implementations.is_native(implementation):
    return None
  if jax.default_backend() != "cpu" or jax.device_count() > 1:
    return "the native kernels run on one CPU device only"
  try:
    return recurrence.unavailable(implementations.native_isa(implementation))
  except UserError as e:  # e.g. an AVX-512 run resumed on an AVX2 CPU
    return str(e)


def implementation_candidates(cell=None) -> list[str]:
  """What "auto" may run here, simplest first (autotune.pick's order); of
  those that can run `cell` (`implementations.implementations_for`) when
  given."""
  candidates = ["fused", "scan"]
  native = f"native_{native_build.default_isa()}"
  if not native_build.disabled() and not _runnable_here(native):
    candidates.append(native)
  return [c for c in candidates
          if cell is None or c in implementations.implementations_for(cell)]


def _stored_choice(workdir: pathlib.Path | None) -> dict[str, Any] | None:
  """The implementation an earlier start of this run chose for "auto"."""
  if workdir is None or not (workdir / rundir.MODEL_FILE).exists():
    return None
  try:
    record = metrics_lib.read_json(workdir / rundir.MODEL_FILE).get(
        "implementation") or {}
  except (OSError, ValueError):
    return None
  if record.get("requested") != "auto" or record.get("source") == "rule":
    return None
  return {"choice": record["choice"], "source": "run",
          "seconds": record.get("seconds", {}), "key": record.get("key", "")}


def run_choice(workdir: pathlib.Path) -> str | None:
  """What "auto" chose in this run before, if it can run here."""
  stored = _stored_choice(workdir)
  if stored and not _runnable_here(stored["choice"]):
    return stored["choice"]
  return None


class _TimedSteps:
  """An autotune runner: n real training steps of one candidate, on its
  own copy of the state."""

  def __init__(self, compiled, state, batch, rng, carry):
    self.compiled, self.state, self.batch = compiled, state, batch
    self.rng, self.carry = rng, carry

  def __call__(self, n: int):
    for _ in range(n):
      self.state, metrics, self.carry = self.compiled(
          self.state, self.batch, self.rng, self.carry)
    jax.block_until_ready(metrics)


def choose(config, task, state, carry, make_step: Callable[..., Any],
           workdir: pathlib.Path | None = None) -> autotune.Choice:
  """What config.model.implementation="auto" runs for this task.

  A run that chose before (its workdir's model.json) keeps its choice, so
  that a resumed run computes what an uninterrupted one would. Otherwise
  the candidates are timed on this task's real training step
  (`autotune.choose`: once per machine and shape, then cached); candidates
  that compile to the same program as a simpler one are not timed. Several
  processes time together and follow process 0. An explicit implementation
  is returned as it is; RNNLAB_AUTOTUNE=0 gives the fixed rule.

  `make_step(task, mesh, stateful)` is the trainer's jitted training step
  for a task (rnnlab.train), `state` and `carry` its inputs.
  """
  requested = config.model.implementation
  if requested != "auto":
    return autotune.Choice(requested, "config")
  if not autotune.timing_enabled():
    return autotune.Choice(implementations.resolve_implementation(
        "auto", config.model.hidden_size,
        layers.cell_from_config(config.model)), "rule")
  stored = distributed.broadcast_json(_stored_choice(workdir)
                          if jax.process_index() == 0 else None)
  if stored:
    reason = _runnable_here(stored["choice"])
    if not reason:
      choice = autotune.Choice(**stored)
      logging.info("implementation=auto runs %s", choice.summary())
      return choice
    logging.warning("This run chose implementation %s before, which cannot "
                    "run here (%s); choosing again.", stored["choice"], reason)
  mesh = sharding.make_mesh()
  rows = sharding.process_rows(config.train.batch_size)
  batch = sharding.shard_batch(mesh, task.train_batch(0, rows))
  model_fields = config.model.to_dict()
  model_fields.pop("implementation")
  fields = {"task": config.task, "model": model_fields,
            "batch": jax.tree.map(lambda x: (np.shape(x), str(x.dtype)),
                                  batch),
            "stateful": carry is not None}

  candidates = implementation_candidates(
      layers.cell_from_config(config.model))

  def make_runners():
    runners, programs = {}, set()
    replicated = NamedSharding(mesh, P())
    for name in candidates:
      candidate = task.with_model(models.with_implementation(task.model,
                                                             name))
      step = make_step(candidate, mesh, carry is not None)
      copy = jax.device_put(jax.tree.map(jnp.copy, state), replicated)
      carry_copy = (None if carry is None else jax.device_put(
          jax.tree.map(jnp.copy, carry),
          sharding.batch_sharding(mesh, carry)))
      rng = jax.random.key(config.seed)
      lowered = step.lower(copy, batch, rng, carry_copy)
      program = hashlib.sha256(lowered.as_text().encode()).hexdigest()
      if program in programs:
        continue  # a simpler candidate runs the same program
      programs.add(program)
      runners[name] = _TimedSteps(lowered.compile(), copy, batch, rng,
                                  carry_copy)
    return runners

  start = time.perf_counter()
  choice = autotune.choose("train", fields, make_runners, candidates,
                           broadcast=distributed.broadcast_json,
                           leader=jax.process_index() == 0)
  logging.info("implementation=auto runs %s [%.1f s]", choice.summary(),
               time.perf_counter() - start)
  return choice
