"""Sequence-to-sequence tasks on generated data (`rnnlab.data.seq2seq`).

Config keys: the seq2seq section (problem "addition" | "dates" and its
keys, attention, beam_size, attention_plots), model.* (the encoder-decoder
of `models/seq2seq.py`, model.name = "seq2seq"), train.batch_size,
eval.batch_size.

Metrics: teacher-forced loss (nats per target token, EOS included) and
exact-match accuracy of greedy decoding (and of beam search when
seq2seq.beam_size > 1) over the whole split.
"""
from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rnnlab import decode
from rnnlab import metrics as metrics_lib
from rnnlab.data import seq2seq as data
from rnnlab.errors import UserError
from rnnlab.registry import lookup
from rnnlab.tasks import base

VOCAB_FILE = "vocab.json"


def make_problem(config):
  d = config.seq2seq
  cls = lookup(data.PROBLEMS, d.problem, "seq2seq problem")
  if cls is data.Addition:
    return cls(config.seed, max_digits=d.max_digits, num_val=d.num_val,
               num_test=d.num_test)
  return cls(config.seed, num_val=d.num_val, num_test=d.num_test,
             locales=tuple(d.locales), formats=tuple(d.formats),
             max_source_len=d.max_source_len)


def seq2seq_loss(model, params, batch, rng, train=True):
  """Mean cross-entropy per target token (EOS included, PAD excluded)."""
  logits, _ = model.apply({"params": params}, batch["source"],
                          batch["source_len"], batch["decoder_input"],
                          train=train, rngs={"dropout": rng})
  nll = optax.softmax_cross_entropy_with_integer_labels(logits,
                                                        batch["target"])
  mask = batch["target_mask"]
  correct = (jnp.argmax(logits, -1) == batch["target"]) * mask
  loss = jnp.sum(nll * mask) / jnp.sum(mask)
  return loss, {"token_accuracy": jnp.sum(correct) / jnp.sum(mask)}


class Seq2SeqTask(base.Task):

  models = ("seq2seq",)
  objective = ("val/accuracy", "max")  # exact match of greedy decoding

  @classmethod
  def check_config(cls, config):
    d = config.seq2seq
    if d.problem == "addition":
      data.Addition.check_args(d.max_digits, d.num_val, d.num_test)
    elif d.problem == "dates":
      data.Dates.check_args(d.locales, d.formats, d.num_val, d.num_test)

  def __init__(self, config):
    self.config = config
    self.problem = make_problem(config)
    self.vocab = data.Seq2SeqVocab(self.problem.chars())
    self.model = self.create_model(vocab_size=len(self.vocab),
                                     attention=config.seq2seq.attention)
    self._eval = {}

  def _encode(self, pairs):
    return data.encode_pairs(self.vocab, pairs, self.problem.max_source_len,
                             self.problem.max_target_len)

  def init_inputs(self):
    b = self._encode(self.problem.train_examples(1, 0))
    return (b["source"], b["source_len"], b["decoder_input"])

  def tokens_per_batch(self):
    return self.config.train.batch_size * self.problem.max_target_len

  def train_batch(self, step, rows=None):
    return self._encode(self.problem.train_examples(
        self.config.train.batch_size, step, rows))

  def loss_fn(self, params, batch, rng):
    return seq2seq_loss(self.model, params, batch, rng)

  @property
  def eval_splits(self):
    return ("val", "test")

  def eval_pairs(self, split):
    if split not in self.eval_splits:
      raise UserError(f"Unknown split {split!r}. Valid choices: "
                      f"{', '.join(self.eval_splits)}.")
    if split not in self._eval:
      pairs = self.problem.eval_examples(split)
      self._eval[split] = (pairs, self._encode(pairs))
    return self._eval[split]

  def predict(self, params, batch, beam_size: int = 1):
    """Decoded strings for an encoded batch."""
    max_len = self.problem.max_target_len
    if beam_size > 1:
      tokens, _ = decode.beam_search(self.model, params, batch["source"],
                                     batch["source_len"], max_len, beam_size)
    else:
      tokens, _ = decode.greedy(self.model, params, batch["source"],
                                batch["source_len"], max_len)
    return decode.decode_text(self.vocab, tokens)

  def evaluate(self, params, split):
    pairs, encoded = self.eval_pairs(split)
    size = self.config.eval.batch_size
    beam_size = self.config.seq2seq.beam_size
    beams = (1,) + ((beam_size,) if beam_size > 1 else ())
    correct = {b: 0 for b in beams}
    loss_sum = tokens = 0.0
    for start in range(0, len(pairs), size):
      batch = {k: v[start:start + size] for k, v in encoded.items()}
      loss, _ = _eval_loss(self.model, params, batch)
      count = float(batch["target_mask"].sum())
      loss_sum, tokens = loss_sum + float(loss) * count, tokens + count
      targets = [t for _, t in pairs[start:start + size]]
      for b in beams:
        predictions = self.predict(params, batch, b)
        correct[b] += sum(p == t for p, t in zip(predictions, targets))
    metrics = {"loss": loss_sum / tokens,
               "accuracy": correct[1] / len(pairs), "examples": len(pairs)}
    if len(beams) > 1:
      metrics[f"beam{beams[1]}_accuracy"] = correct[beams[1]] / len(pairs)
    return metrics

  def save_metadata(self, workdir):
    # Process 0 writes it (a resumed run keeps it); every process checks it.
    path = pathlib.Path(workdir) / VOCAB_FILE
    if metrics_lib.run_file(path, self.vocab.save,
                            data.Seq2SeqVocab.load) != self.vocab:
      raise UserError(f"{path} does not match this task's vocabulary; use "
                      "a new workdir.")

  def write_reports(self, params, workdir):
    """Attention heatmaps of the first seq2seq.attention_plots test examples:
    <workdir>/attention/test_<i>.png."""
    if self.config.seq2seq.attention == "none" or not (
        self.config.seq2seq.attention_plots):
      return []
    directory = pathlib.Path(workdir) / "attention"
    directory.mkdir(exist_ok=True)
    return [metrics_lib.plot_attention(directory / f"test_{i}.png", source,
                                       prediction, weights)
            for i, (source, prediction, weights) in enumerate(attention_maps(
                self, params, "test", self.config.seq2seq.attention_plots))]

  def periodic_output(self, params, step):
    pairs, encoded = self.eval_pairs("val")
    batch = {k: v[:4] for k, v in encoded.items()}
    predictions = self.predict(params, batch)
    return "\n".join(f"{s!r} -> {p!r} (target {t!r})"
                     for (s, t), p in zip(pairs[:4], predictions))


@jax.jit(static_argnums=0)
def _eval_loss(model, params, batch):
  return seq2seq_loss(model, params, batch, jax.random.key(0), train=False)


def attention_maps(task: Seq2SeqTask, params, split: str = "test",
                   num: int = 4):
  """(source, prediction, weights [L, S]) of the first `num` examples."""
  pairs, encoded = task.eval_pairs(split)
  batch = {k: v[:num] for k, v in encoded.items()}
  tokens, weights = decode.greedy(task.model, params, batch["source"],
                                  batch["source_len"],
                                  task.problem.max_target_len)
  out = []
  for i, (source, _) in enumerate(pairs[:num]):
    prediction = task.vocab.decode(tokens[i])
    out.append((source, prediction,
                np.asarray(weights[i, :len(prediction) + 1, :len(source)])))
  return out
