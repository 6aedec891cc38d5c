"""Character-level language modelling (Tiny Shakespeare by default).

Training batches are random windows [B, T] from the training split (full
BPTT within each window), or with train.order="stateful" consecutive chunks
of B contiguous streams with the hidden state carried across chunks
(truncated BPTT, char-rnn); the loss is the mean next-character
cross-entropy over all B*T positions. Evaluation runs over a whole split
as contiguous streams, carrying the recurrent state across chunks, and
reports nats and bits/char.
"""
from __future__ import annotations

import functools
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rnnlab import metrics as metrics_lib
from rnnlab import rundir
from rnnlab import sampling
from rnnlab.data import text
from rnnlab.errors import UserError
from rnnlab.tasks import base

def load_corpus(text_config) -> str:
  """The corpus of config.text: source "file" (a path, or corpus by name)
  or "tfds"."""
  if text_config.source == "tfds":
    return text.read_tfds_text(data_dir=text_config.tfds_data_dir)
  return text.read_text(text.resolve_corpus(text_config.corpus,
                                            text_config.path))


def lm_loss_and_carry(model, params, batch, rng, carry=None):
  """Mean next-token cross-entropy over all B*T positions, dropout on, and
  the final carry; the state starts from `carry` (None = zeros)."""
  logits, carry = model.apply({"params": params}, batch["inputs"], carry,
                              train=True, rngs={"dropout": rng})
  loss = optax.softmax_cross_entropy_with_integer_labels(
      logits, batch["targets"]).mean()
  return loss, carry


def lm_loss(model, params, batch, rng):
  """`loss_fn` of random-window training: (loss, metrics)."""
  return lm_loss_and_carry(model, params, batch, rng)[0], {}


def nll_sum(logits, targets, mask):
  """Masked sum of next-token negative log-likelihoods, and the count."""
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  return jnp.sum(nll * mask), jnp.sum(mask)


class CharLMTask(base.Task):
  """Config keys: text.*, model.*, train.*, eval.num_streams/seq_len,
  sample.*."""

  models = ("rnn_lm", "attention_lm")

  @classmethod
  def check_config(cls, config):
    base.check_split_fractions("text", config.text.val_fraction,
                          config.text.test_fraction)

  def __init__(self, config):
    self.config = config
    self.vocab, self.splits = self.tokenize(load_corpus(config.text))
    if len(self.splits["train"]) < config.train.seq_len + 1:
      raise UserError(
          f"train.seq_len={config.train.seq_len} is longer than the training "
          f"split ({len(self.splits['train'])} characters).")
    self.stateful = config.train.order == "stateful"
    if self.stateful:  # fails early if the split is too short
      self._chunks_per_epoch = text.stateful_chunks_per_epoch(
          len(self.splits["train"]), config.train.batch_size,
          config.train.seq_len)
    self.model = self.create_model(vocab_size=len(self.vocab))
    self._eval_data = {}
    if config.train.sample_every:  # fail now, not at the first sample
      s = config.sample
      sampling.check_options(self.vocab, s.prime, s.length, s.temperature,
                           s.top_k, prefix="config.sample.")

  unit = "char"  # what a token is, in metric names: bits_per_char, chars

  def tokenize(self, corpus: str):
    """-> (vocabulary, {"train"|"val"|"test": token ids})."""
    vocab = text.Vocab.from_text(corpus)  # the whole file, as nanoGPT
    return vocab, text.split_tokens(vocab.encode(corpus),
                                    self.config.text.val_fraction,
                                    self.config.text.test_fraction)

  def init_inputs(self):
    return (jnp.zeros((1, self.config.train.seq_len), jnp.int32),)

  def tokens_per_batch(self):
    return self.config.train.batch_size * self.config.train.seq_len

  def train_batch(self, step, rows=None):
    c = self.config
    if self.stateful:
      inputs, targets, reset = text.stateful_chunks(
          self.splits["train"], c.train.batch_size, c.train.seq_len, c.seed,
          step, rows)
      return {"inputs": inputs, "targets": targets, "reset": reset}
    inputs, targets = text.random_windows(
        self.splits["train"], c.train.batch_size, c.train.seq_len, c.seed,
        step, rows)
    return {"inputs": inputs, "targets": targets}

  def loss_fn(self, params, batch, rng):
    return lm_loss(self.model, params, batch, rng)

  def initial_train_carry(self):
    if not self.stateful:
      return None
    return self.model.initialize_carry(self.config.train.batch_size)

  def stateful_loss_fn(self, params, batch, rng, carry):
    # Zero the state at each epoch's first chunk; within an epoch it carries
    # on, but gradients stop at the chunk boundary (truncated BPTT).
    fresh = self.model.initialize_carry(self.config.train.batch_size)
    carry = jax.tree.map(lambda c, z: jnp.where(batch["reset"], z, c),
                         jax.lax.stop_gradient(carry), fresh)
    loss, carry = lm_loss_and_carry(self.model, params, batch, rng, carry)
    return loss, ({}, jax.lax.stop_gradient(carry))

  def steps_per_epoch(self):
    c = self.config.train
    if self.stateful:
      return self._chunks_per_epoch
    return max(1, len(self.splits["train"]) // (c.batch_size * c.seq_len))

  def token_ids(self, batch):
    return batch["inputs"]

  @property
  def eval_splits(self):
    return tuple(s for s in ("val", "test") if len(self.splits[s]) > 1)

  def evaluate(self, params, split):
    if split not in self.eval_splits:
      raise UserError(f"Unknown or empty split {split!r}. Valid choices: "
                       f"{', '.join(self.eval_splits)}.")
    if split not in self._eval_data:
      self._eval_data[split] = jax.tree.map(jnp.asarray, text.eval_streams(
          self.splits[split], self.config.eval.num_streams,
          self.config.eval.seq_len))
    total, count = _stream_nll(self.model, params, self._eval_data[split])
    loss = float(total) / float(count)
    return {"loss": loss, f"bits_per_{self.unit}": loss / math.log(2),
            "perplexity": math.exp(loss), f"{self.unit}s": int(count)}

  def save_metadata(self, workdir):
    # Process 0 writes it (a resumed run keeps it); every process checks it.
    path = pathlib.Path(workdir) / rundir.VOCAB_FILE
    saved = metrics_lib.run_file(path, self.vocab.save, text.load_vocab)
    if saved != self.vocab:
      raise UserError(
          f"{path} does not match this run's corpus: saved "
          f"{len(saved)} {self.unit}s, corpus has {len(self.vocab)}. Use a "
          "new workdir for a different corpus.")

  def periodic_output(self, params, step):
    s = self.config.sample
    return sampling.sample_text(
        self.model, params, self.vocab, s.prime, s.length,
        seed=self.config.seed + step, temperature=s.temperature,
        top_k=s.top_k)[0]


class WordLMTask(CharLMTask):
  """Word-level LM: the char LM's text split (same character positions),
  words and punctuation as tokens, the text.vocab_size most frequent words
  of the training split plus <unk>. Reports perplexity per word."""

  unit = "word"

  @classmethod
  def check_config(cls, config):
    super().check_config(config)
    if config.text.vocab_size < 2:
      raise UserError(f"config.text.vocab_size={config.text.vocab_size} "
                      "must be >= 2 (<unk> and at least one word).")

  def tokenize(self, corpus: str):
    d = self.config.text
    # Split the characters first, exactly as the char LM, then tokenise
    # each part: validation covers the same text in both models.
    bounds = text.split_tokens(np.arange(len(corpus)), d.val_fraction,
                               d.test_fraction)
    parts = {k: corpus[v[0]:v[-1] + 1] if len(v) else ""
             for k, v in bounds.items()}
    vocab = text.WordVocab.from_text(parts["train"], d.vocab_size)
    return vocab, {k: vocab.encode(v) for k, v in parts.items()}


def eval_step(model, params, carry, chunk):
  """One chunk [B, T] of an eval stream: (carry, chunk) -> (carry, sums)."""
  logits, carry = model.apply({"params": params}, chunk["inputs"], carry)
  return carry, nll_sum(logits, chunk["targets"], chunk["mask"])


@functools.partial(jax.jit, static_argnums=0)
def _stream_nll(model, params, data):
  """Sum of NLL over chunks [C, B, T], carrying the state chunk to chunk."""
  carry = model.initialize_carry(data["inputs"].shape[1])
  _, (sums, counts) = jax.lax.scan(
      functools.partial(eval_step, model, params), carry, data)
  return jnp.sum(sums), jnp.sum(counts)
