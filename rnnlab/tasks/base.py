"""The interface between a task and the generic trainer in `rnnlab.train`."""
from __future__ import annotations

import abc
import copy
import pathlib
from typing import Any, ClassVar, Mapping

import flax.linen as nn
import jax
import ml_collections

from rnnlab import models as models_lib
from rnnlab.errors import UserError

Batch = Mapping[str, Any]
Metrics = dict[str, Any]


class Task(abc.ABC):
  """Data + model + loss + evaluation for one kind of problem."""

  # The model names (models.MODELS) this task can build and feed: the one
  # place that pairs models with tasks (rnnlab.config_check).
  models: ClassVar[tuple[str, ...]] = ()
  # What a hyperparameter search optimises: a metrics.jsonl key
  # ("split/metric") and its direction, "min" or "max".
  objective: ClassVar[tuple[str, str]] = ("val/loss", "min")

  config: ml_collections.ConfigDict
  model: nn.Module

  @classmethod
  def check_model(cls, config: ml_collections.ConfigDict) -> None:
    """UserError unless config.model.name is one of `models`."""
    if config.model.name not in cls.models:
      raise UserError(
          f"task={config.task!r} needs model.name="
          f"{' or '.join(map(repr, cls.models))}, got "
          f"{config.model.name!r}.")

  def create_model(self, **task_fields) -> nn.Module:
    """config.model's module, given what the task derives from its data
    (e.g. vocab_size), after `check_model`."""
    self.check_model(self.config)
    return models_lib.create_model(self.config.model, **task_fields)

  @classmethod
  def check_config(cls, config: ml_collections.ConfigDict) -> None:
    """Raises UserError for what the per-key rules of rnnlab.base_config
    cannot see: relations between this task's keys (e.g. a window shorter
    than its loss positions). Called by rnnlab.config_check before any
    data is read; data-dependent checks stay with the data."""

  def with_model(self, model: nn.Module) -> "Task":
    """This task with another model of the same parameters (e.g. another
    recurrent implementation); data and caches are shared."""
    task = copy.copy(self)
    task.model = model
    return task

  @abc.abstractmethod
  def init_inputs(self) -> tuple[Any, ...]:
    """Example model inputs (small batch) for `model.init`."""

  @abc.abstractmethod
  def train_batch(self, step: int, rows: slice | None = None) -> Batch:
    """The batch for `step`: a pure function of (config.seed, step).

    `rows` (multi-process data parallelism) selects this process's rows of
    the global batch, [B/n] of [B]; only those are read and encoded. The
    choice of examples is still drawn for the whole batch, so the rows equal
    the same slice of the full batch. Scalars (e.g. a reset flag) stay whole.
    """

  @abc.abstractmethod
  def loss_fn(self, params, batch: Batch, rng: jax.Array
              ) -> tuple[jax.Array, Metrics]:
    """Training loss (train mode, dropout on) and auxiliary metrics."""

  @property
  @abc.abstractmethod
  def eval_splits(self) -> tuple[str, ...]:
    """Splits `evaluate` accepts, e.g. ("val", "test")."""

  @abc.abstractmethod
  def evaluate(self, params, split: str) -> Metrics:
    """Metrics over the whole of `split` (eval mode)."""

  def initial_train_carry(self) -> Any:
    """State carried from one training batch to the next (truncated BPTT),
    or None. A task returning a carry implements `stateful_loss_fn`."""
    return None

  def stateful_loss_fn(self, params, batch: Batch, rng: jax.Array, carry
                       ) -> tuple[jax.Array, tuple[Metrics, Any]]:
    """As `loss_fn`, also taking and returning the carried state."""
    raise NotImplementedError(f"{type(self).__name__} carries no state.")

  def steps_per_epoch(self) -> int | None:
    """Steps per pass over the training data (epoch-based schedules)."""
    return None

  def token_ids(self, batch: Batch) -> Any:
    """The batch's input token ids (sparse_adam's present rows), or None
    to treat rows with a nonzero gradient as present."""
    return None

  def tokens_per_batch(self) -> int:
    """For throughput logging."""
    return 0

  def save_metadata(self, workdir: pathlib.Path):
    """Writes what inference needs besides the checkpoint (e.g. vocab)."""

  def periodic_output(self, params, step: int) -> str | None:
    """Something human-readable to log during training (e.g. a sample)."""
    return None

  def write_reports(self, params, workdir: pathlib.Path) -> list[pathlib.Path]:
    """Files (e.g. plots) written after training and by --mode=eval."""
    return []


def check_split_fractions(section: str, val_fraction: float,
                          test_fraction: float):
  """UserError unless the validation and test shares leave a training
  split (a config check of the text and forecast sections)."""
  if not val_fraction + test_fraction < 1:
    raise UserError(f"config.{section}.val_fraction={val_fraction!r} plus "
                    f"config.{section}.test_fraction={test_fraction!r} must "
                    "be below 1 (the rest is the training split).")
