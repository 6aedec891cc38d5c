"""Synthetic long-range memory problems: adding and copy memory.

Config keys: the synthetic section: problem ("adding" | "copy_memory"),
lag, and for copy_memory copy_length and alphabet; num_val and num_test
(sizes of the fixed evaluation sets); model.* with
model.name = "sequence" (`models/sequence.py`); train.batch_size;
eval.batch_size (examples per evaluation batch). The problems are defined in
`rnnlab/data/synthetic.py`.

Losses and metrics (evaluation in eval mode over the whole fixed split):
  adding       MSE of the last step's output against the sum of the two
               marked values ("loss" = "mse"). The baseline of always
               predicting 1 scores 1/6 ~ 0.167; "solved" means a test MSE
               below ADDING_SOLVED_MSE = 0.01 (6% of that baseline).
  copy_memory  cross-entropy over the S output positions only, in nats per
               recalled symbol (baseline ln(A), 2.079 for A = 8: guessing
               the symbols uniformly once the blanks are learned; Arjovsky
               et al.'s all-position loss is this times S / T). "accuracy"
               is the fraction of recalled symbols the argmax gets right
               (baseline 1/A), "sequence_accuracy" the fraction of examples
               with all S right; "solved" means accuracy >=
               COPY_SOLVED_ACCURACY = 0.99.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from rnnlab.data import synthetic as data
from rnnlab.registry import lookup
from rnnlab.tasks import base

ADDING_SOLVED_MSE = 0.01
COPY_SOLVED_ACCURACY = 0.99


def adding_loss(model, params, batch, rng, train: bool = True):
  """MSE of the last step's output [B] against the targets [B]."""
  outputs, _ = model.apply({"params": params}, batch["inputs"], train=train,
                           rngs={"dropout": rng})
  return jnp.mean(jnp.square(outputs[:, -1, 0] - batch["targets"])), {}


def copy_memory_loss(model, params, batch, rng, train: bool = True):
  """Mean cross-entropy over the masked (output) positions, and accuracy."""
  logits, _ = model.apply({"params": params}, batch["inputs"], train=train,
                          rngs={"dropout": rng})
  nll = optax.softmax_cross_entropy_with_integer_labels(logits,
                                                        batch["targets"])
  mask = batch["mask"]
  count = jnp.sum(mask)
  correct = (jnp.argmax(logits, -1) == batch["targets"]) * mask
  return jnp.sum(nll * mask) / count, {"accuracy": jnp.sum(correct) / count}


LOSSES: dict[str, Callable[..., Any]] = {
    "adding": adding_loss,
    "copy_memory": copy_memory_loss,
}


class SyntheticTask(base.Task):
  """`synthetic.problem` of `rnnlab.data.synthetic` with a
  `SequenceModel`."""

  models = ("sequence",)

  @classmethod
  def check_config(cls, config):
    s = config.synthetic
    rng = data.rng_for(0, 0)
    if s.problem == "adding":  # the generators check their arguments
      data.adding_batch(rng, 1, s.lag)
    else:
      data.copy_memory_batch(rng, 1, s.lag, s.copy_length, s.alphabet)

  def __init__(self, config):
    self.config = config
    d = config.synthetic
    self.problem = d.problem
    self._loss = lookup(LOSSES, d.problem,
                        "synthetic problem (synthetic.problem)")
    if self.problem == "adding":
      self.model = self.create_model(output_size=1)
    else:
      in_vocab, out_vocab = data.copy_memory_vocab(d.alphabet)
      self.model = self.create_model(output_size=out_vocab,
                                       input_vocab_size=in_vocab)
    self._eval = {}

  def _batch(self, rng, batch_size: int) -> dict[str, Any]:
    d = self.config.synthetic
    if self.problem == "adding":
      return data.adding_batch(rng, batch_size, d.lag)
    return data.copy_memory_batch(rng, batch_size, d.lag, d.copy_length,
                                  d.alphabet)

  def init_inputs(self):
    return (self._batch(data.rng_for(0, 0), 1)["inputs"],)

  def tokens_per_batch(self):
    return self.config.train.batch_size * self.init_inputs()[0].shape[1]

  def train_batch(self, step, rows=None):
    # Generated, not read: the whole batch is drawn (random numbers) and
    # this process keeps its rows.
    batch = self._batch(data.train_rng(self.config.seed, step),
                        self.config.train.batch_size)
    return {k: v[rows or slice(None)] for k, v in batch.items()}

  def loss_fn(self, params, batch, rng):
    return self._loss(self.model, params, batch, rng)

  @property
  def eval_splits(self):
    return ("val", "test")

  def eval_data(self, split: str) -> dict[str, jax.Array]:
    """The fixed set of `split` (synthetic.num_val / num_test examples)."""
    if split not in self._eval:
      size = {"val": self.config.synthetic.num_val,
              "test": self.config.synthetic.num_test}.get(split)
      rng = data.split_rng(self.config.seed, split)  # checks the name
      self._eval[split] = jax.tree.map(jnp.asarray, self._batch(rng, size))
    return self._eval[split]

  def evaluate(self, params, split):
    examples = self.eval_data(split)
    n = int(examples["inputs"].shape[0])
    size = self.config.eval.batch_size
    totals = None
    for start in range(0, n, size):
      batch = {k: v[start:start + size] for k, v in examples.items()}
      sums = _eval_sums(self.model, self.problem, params, batch)
      totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = {k: float(v) for k, v in totals.items()}
    if self.problem == "adding":
      mse = totals["squared_error"] / n
      return {"loss": mse, "mse": mse, "solved": float(
          mse < ADDING_SOLVED_MSE), "examples": n}
    count = totals["count"]
    accuracy = totals["correct"] / count
    return {"loss": totals["nll"] / count, "accuracy": accuracy,
            "sequence_accuracy": totals["all_correct"] / n,
            "solved": float(accuracy >= COPY_SOLVED_ACCURACY), "examples": n}


@functools.partial(jax.jit, static_argnums=(0, 1))
def _eval_sums(model, problem: str, params, batch) -> dict[str, jax.Array]:
  """Sums over one eval batch (eval mode), to be added across batches."""
  outputs, _ = model.apply({"params": params}, batch["inputs"])
  if problem == "adding":
    error = outputs[:, -1, 0] - batch["targets"]
    return {"squared_error": jnp.sum(jnp.square(error))}
  mask = batch["mask"]
  nll = optax.softmax_cross_entropy_with_integer_labels(outputs,
                                                        batch["targets"])
  wrong = (jnp.argmax(outputs, -1) != batch["targets"]) * mask
  return {"nll": jnp.sum(nll * mask), "count": jnp.sum(mask),
          "correct": jnp.sum(mask) - jnp.sum(wrong),
          "all_correct": jnp.sum(jnp.sum(wrong, axis=1) == 0)}
