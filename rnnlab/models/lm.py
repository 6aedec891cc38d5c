"""Character (or token) language model: embed -> recurrent stack -> logits.

Shape legend: B batch, T time, V vocabulary, E embedding, H hidden size.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnnlab.errors import UserError
from rnnlab.models import layers
from rnnlab.registry import lookup

EMBEDDINGS = ("learned", "one_hot")


class RecurrentLM(nn.Module):
  """tokens [B, T] int -> (logits [B, T, V] float32, carries).

  embedding="learned" uses an [V, E] table drawn from N(0, embed_init_std²);
  "one_hot" feeds one-hot vectors of size V straight into the first layer,
  as char-rnn does. `rnn` is the
  recurrent stack; dropout (its rate) is applied again before the readout.
  Carries are per-layer cell carries; pass them back to continue a sequence.
  """

  vocab_size: int
  rnn: layers.RecurrentStack
  embed_dim: int = 64
  embedding: str = "learned"
  embed_init_std: float = 1.0

  @classmethod
  def from_config(cls, c, *, vocab_size: int) -> "RecurrentLM":
    lookup({e: e for e in EMBEDDINGS}, c.embedding, "embedding")
    if c.bidirectional:
      raise UserError(
          "model.bidirectional=True cannot be used in a language model: the "
          "backward direction reads the characters after each position, "
          "including the one it is asked to predict, so the loss would mean "
          "nothing. Use bidirectional layers in encoders (classification, "
          "seq2seq); for a two-way LM, train a forward and a backward LM.")
    rnn = layers.RecurrentStack(**layers.stack_kwargs_from_config(c),
                                parent=None)
    return cls(vocab_size=vocab_size, rnn=rnn, embed_dim=c.embed_dim,
               embedding=c.embedding, embed_init_std=c.embed_init_std)

  def initialize_carry(self, batch_size: int) -> tuple[Any, ...]:
    return self.rnn.initialize_carry(batch_size)

  def setup(self):
    dtype, param_dtype = self.rnn.dtype, self.rnn.param_dtype
    if self.embedding == "learned":
      self.embed = nn.Embed(
          self.vocab_size, self.embed_dim, param_dtype=param_dtype,
          embedding_init=nn.initializers.normal(self.embed_init_std))
    self.dropout = layers.Dropout(self.rnn.dropout_rate)
    self.readout = nn.Dense(self.vocab_size, dtype=dtype,
                            param_dtype=param_dtype)

  def _inputs(self, tokens):
    if self.embedding == "learned":
      return self.embed(tokens)
    return jax.nn.one_hot(tokens, self.vocab_size, dtype=self.rnn.dtype)

  def __call__(self, tokens, carries=None, *, train: bool = False):
    carries, h = self.rnn(self._inputs(tokens), carries, train=train)
    h = self.dropout(h, deterministic=not train)
    return self.readout(h).astype(jnp.float32), carries

  def step(self, tokens, carries):
    """One token per sequence: tokens [B] -> (logits [B, V], carries)."""
    carries, h = self.rnn.step(self._inputs(tokens), carries)
    return self.readout(h).astype(jnp.float32), carries
