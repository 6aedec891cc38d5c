"""Sequence classification: one label per variable-length sequence.

Config keys: the classify section: source ("japanese_vowels" | "tfds")
and, for tfds, tfds_name, train_split/val_split/test_split, text_feature,
label_feature, tfds_data_dir, tokenization, vocab_size, max_tokens;
val_fraction (the validation split carved from the training split,
stratified, seeded by config.seed); pad_multiple and bucket (batch
shapes); pooling and input_projection (the classifier's head). model.*
with model.name = "classifier" (`models/classifier.py`, e.g.
model.bidirectional); train.batch_size; eval.batch_size.

Training batches: each epoch is a shuffle of the training split drawn from
(seed, epoch), cut into batches of train.batch_size (remainder dropped), so
batch `step` is a pure function of (seed, step). Loss: mean cross-entropy.
Evaluation, over a whole split: "loss" (mean cross-entropy, nats), "accuracy",
"examples". The first eval split, "val", picks the best checkpoint
(<workdir>/best/); after training and in --mode=eval, `write_reports`
evaluates that checkpoint on every split into <workdir>/best_eval.json.
"""
from __future__ import annotations

import dataclasses
import functools
import pathlib
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from rnnlab import metrics as metrics_lib
from rnnlab import models as models_lib
from rnnlab import rundir
from rnnlab.data import classification as data
from rnnlab.errors import CheckpointError, UserError
from rnnlab.tasks import base

METADATA_FILE = "metadata.json"  # classes; the vocabulary or feature stats
BEST_EVAL_FILE = "best_eval.json"


def classify_loss(model, params, batch, rng, train: bool = True):
  """Mean cross-entropy over the batch's examples, and its accuracy; for
  an ensemble's members' logits [M, B, C], the mean over the members, so
  each member's gradient is its own loss's, scaled by 1/M."""
  logits = model.apply({"params": params}, batch["inputs"], batch["lengths"],
                       train=train, rngs={"dropout": rng})
  labels = jnp.broadcast_to(batch["labels"], logits.shape[:-1])
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  correct = jnp.argmax(logits, -1) == labels
  return jnp.mean(nll), {"accuracy": jnp.mean(correct.astype(jnp.float32))}


@functools.partial(jax.jit, static_argnums=0)
def _eval_sums(model, params, batch) -> dict[str, jax.Array]:
  """Weighted sums over one eval batch (weight 0 = filler row)."""
  logits = model.apply({"params": params}, batch["inputs"], batch["lengths"])
  nll = optax.softmax_cross_entropy_with_integer_labels(logits,
                                                        batch["labels"])
  correct = (jnp.argmax(logits, -1) == batch["labels"]).astype(jnp.float32)
  w = batch["weights"]
  return {"nll": jnp.sum(nll * w), "correct": jnp.sum(correct * w),
          "count": jnp.sum(w)}


def head_fields(c: ml_collections.ConfigDict) -> dict[str, Any]:
  """The classifier's fields that config.classify (`c`) sets."""
  return dict(pooling=c.pooling, input_projection=c.input_projection,
              word_dropout=c.word_dropout, unk_id=data.UNK_ID,
              pad_id=data.PAD_ID, ensemble_size=c.ensemble_size)


class ClassifyTask(base.Task):
  """A `data.classification.Dataset` with a `SequenceClassifier`."""

  models = ("classifier",)
  objective = ("val/accuracy", "max")

  @classmethod
  def check_config(cls, config):
    c = config.classify
    if not c.val_split and not c.val_fraction > 0:
      raise UserError(f"config.classify.val_fraction={c.val_fraction!r} "
                      "must be in (0, 1) when config.classify.val_split is "
                      "'' (the validation split is carved from training).")
    if c.source == "csv" and not c.train_csv:
      raise UserError("config.classify.source='csv' needs "
                      "config.classify.train_csv, the CSV file of labelled "
                      "text (columns classify.text_column and "
                      "classify.label_column).")
    if c.source == "csv" and not c.test_csv and not c.test_fraction > 0:
      raise UserError(f"config.classify.test_fraction={c.test_fraction!r} "
                      "must be in (0, 1) without config.classify.test_csv "
                      "(the test split is carved from train_csv).")
    if c.source in ("tfds", "csv") and c.vocab_size < 3:
      raise UserError(f"config.classify.vocab_size={c.vocab_size} must be "
                      ">= 3 (<pad>, <unk> and at least one token).")

  def __init__(self, config):
    self.config = config
    t0 = time.perf_counter()
    self.dataset = data.load_dataset(config.classify, config.seed)
    train = self.dataset.splits["train"]
    logging.info("Loaded %s in %.1f s: %s; %d classes.",
                 config.classify.source,
                 time.perf_counter() - t0,
                 ", ".join(f"{k} {len(v)}" for k, v in
                           self.dataset.splits.items()),
                 len(self.dataset.classes))
    self._steps_per_epoch = data.epoch_batches(
        train.lengths, config.train.batch_size, config.seed, 0,
        False).shape[0]  # also fails early on a batch larger than the split
    vocab = self.dataset.vocab
    self.model = self.create_model(num_classes=len(self.dataset.classes),
        vocab_size=len(vocab) if vocab is not None else 0,
        **head_fields(config.classify))
    self._epoch = (None, None)  # (epoch, its batches), the one in use
    self._eval = {}

  @property
  def classes(self) -> list[str]:
    return self.dataset.classes

  def init_inputs(self):
    batch = self.train_batch(0)
    return (batch["inputs"][:1], batch["lengths"][:1])

  def tokens_per_batch(self):
    return int(self.config.train.batch_size *
               np.mean(self.dataset.splits["train"].lengths))

  def steps_per_epoch(self):
    return self._steps_per_epoch

  def train_batch(self, step, rows=None):
    c = self.config
    epoch, k = divmod(step, self._steps_per_epoch)
    split = self.dataset.splits["train"]
    if self._epoch[0] != epoch:
      self._epoch = (epoch, data.epoch_batches(
          split.lengths, c.train.batch_size, c.seed, epoch, c.classify.bucket))
    index = self._epoch[1][k]
    # The global batch's width, so that every process's rows have one shape.
    width = data.round_up(int(split.lengths[index].max()),
                          c.classify.pad_multiple)
    return data.make_batch(split, index[rows or slice(None)],
                           c.classify.pad_multiple, width=width)

  def loss_fn(self, params, batch, rng):
    return classify_loss(self.model, params, batch, rng)

  def token_ids(self, batch):
    return batch["inputs"] if self.dataset.vocab is not None else None

  @property
  def eval_splits(self):
    return ("val", "test")

  def evaluate(self, params, split):
    if split not in self.eval_splits:
      raise UserError(f"Unknown split {split!r}. Valid choices: "
                      f"{', '.join(self.eval_splits)}.")
    if split not in self._eval:
      self._eval[split] = data.eval_batches(
          self.dataset.splits[split], self.config.eval.batch_size,
          self.config.classify.pad_multiple)
    totals = {"nll": 0.0, "correct": 0.0, "count": 0.0}
    for batch in self._eval[split]:
      for k, v in _eval_sums(self.model, params, batch).items():
        totals[k] += float(v)
    n = totals["count"]
    return {"loss": totals["nll"] / n, "accuracy": totals["correct"] / n,
            "examples": int(n)}

  def predict(self, params, inputs: np.ndarray, lengths: np.ndarray
              ) -> np.ndarray:
    """Class ids [B] of a right-padded batch (eval mode)."""
    return np.asarray(jnp.argmax(self.model.apply(
        {"params": params}, inputs, lengths), -1))

  def save_metadata(self, workdir):
    # Process 0 writes it (a resumed run keeps it); every process checks it.
    path = pathlib.Path(workdir) / METADATA_FILE
    self.dataset.check_metadata(metrics_lib.run_file(
        path, functools.partial(metrics_lib.write_json,
                                obj=self.dataset.metadata()),
        metrics_lib.read_json), path)

  def write_reports(self, params, workdir):
    """<workdir>/best_eval.json: every eval split's metrics for the
    checkpoint that the validation loss picked (<workdir>/best/)."""
    del params  # the newest parameters; the report is about the best ones
    result = evaluate_best(self, workdir)
    if result is None:
      return []
    path = pathlib.Path(workdir) / BEST_EVAL_FILE
    metrics_lib.write_json(path, result)
    logging.info("Best checkpoint (step %d, chosen on val loss): %s",
                 result["step"], ", ".join(
                     f"{s} accuracy {m['accuracy']:.4f}"
                     for s, m in result["eval"].items()))
    return [path]


def evaluate_best(task: ClassifyTask, workdir) -> dict[str, Any] | None:
  """{"step", "eval": {split: metrics}} of <workdir>/best/, or None if the
  run has no best checkpoint yet."""
  if not (pathlib.Path(workdir) / rundir.BEST_DIR).is_dir():
    return None
  try:
    step, params = rundir.restore_best_params(task.model, task.init_inputs(),
                                              workdir)
  except CheckpointError as e:
    logging.warning("No usable best checkpoint in %s: %s", workdir, e)
    return None
  return {"step": step, "chosen_on": "val loss",
          "eval": {s: task.evaluate(params, s) for s in task.eval_splits}}


# -- Labelling new text with a trained run. ----------------------------------


@dataclasses.dataclass
class TextClassifier:
  """A trained text-classification run, ready to label new texts."""
  config: Any
  model: Any
  params: Any
  vocab: data.TokenVocab
  classes: list[str]
  step: int
  checkpoint: str  # "best" (chosen on validation) or "latest"

  def probabilities(self, texts: list[str]) -> np.ndarray:
    """[N, C] class probabilities of `texts`, in batches of
    config.eval.batch_size, each text tokenised and cut as in training."""
    c = self.config.classify
    out = []
    for start in range(0, len(texts), self.config.eval.batch_size):
      ids = [self.vocab.encode(t, c.max_tokens)
             for t in texts[start:start + self.config.eval.batch_size]]
      inputs, lengths = data.pad_sequences(ids, np.int32)
      width = data.round_up(inputs.shape[1], c.pad_multiple)
      inputs = np.pad(inputs, [(0, 0), (0, width - inputs.shape[1])])
      logits = self.model.apply({"params": self.params}, inputs, lengths)
      out.append(np.asarray(jax.nn.softmax(logits.astype(jnp.float32), -1)))
    return np.concatenate(out) if out else np.zeros((0, len(self.classes)))

  def label(self, texts: list[str]) -> list[tuple[str, float]]:
    """(label, its probability) of each text."""
    p = self.probabilities(texts)
    return [(self.classes[int(i)], float(row[i]))
            for row, i in zip(p, np.argmax(p, -1))]


def load_text_classifier(workdir, checkpoint_name: str = "best"
                         ) -> TextClassifier:
  """The run in `workdir` for labelling: its config, vocabulary and
  classes (metadata.json) and the parameters of its best checkpoint
  (`checkpoint_name` "best", chosen on validation; the newest if the run
  has none yet) or of its newest ("latest"). Reads no training data."""
  rundir.check_checkpoint_choice(checkpoint_name)
  workdir = pathlib.Path(workdir)
  config, meta = rundir.load_task_run(workdir, "classify", "labelling text",
                                      METADATA_FILE)
  if not meta.get("vocab"):
    raise UserError(f"{workdir} classifies real-valued frames "
                    f"(classify.source={config.classify.source!r}), not "
                    "text.")
  vocab = data.TokenVocab.from_dict(meta["vocab"])
  classes = list(meta["classes"])
  ClassifyTask.check_model(config)
  model = models_lib.create_model(
      config.model, num_classes=len(classes), vocab_size=len(vocab),
      **head_fields(config.classify))
  inputs = (np.ones((1, 1), np.int32), np.ones((1,), np.int32))
  step, params, checkpoint_name = rundir.restore_chosen_params(
      model, inputs, workdir, checkpoint_name)
  return TextClassifier(config, model, params, vocab, classes, step,
                        checkpoint_name)
