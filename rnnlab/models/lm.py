"""Character (or token) language model: embed -> recurrent stack -> logits.

Shape legend: B batch, T time, V vocabulary, E embedding, H hidden size.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnnlab.models import layers
from rnnlab.registry import lookup

EMBEDDINGS = ("learned", "one_hot")


class RecurrentLM(nn.Module):
  """tokens [B, T] int -> (logits [B, T, V] float32, carries).

  embedding="learned" uses an [V, E] table; "one_hot" feeds one-hot vectors
  of size V straight into the first layer, as char-rnn does.
  Carries are per-layer cell carries; pass them back to continue a sequence.
  """

  vocab_size: int
  cell: str = "gru"
  hidden_size: int = 256
  num_layers: int = 2
  embed_dim: int = 64
  embedding: str = "learned"
  dropout_rate: float = 0.0
  cell_options: Any = None
  hoist_input_projection: bool = True
  unroll: int = 1
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @classmethod
  def from_config(cls, c, *, vocab_size: int) -> "RecurrentLM":
    lookup({e: e for e in EMBEDDINGS}, c.embedding, "embedding")
    return cls(vocab_size=vocab_size, embedding=c.embedding,
               embed_dim=c.embed_dim, **layers.stack_kwargs_from_config(c))

  def setup(self):
    if self.embedding == "learned":
      self.embed = nn.Embed(self.vocab_size, self.embed_dim,
                            param_dtype=self.param_dtype)
    self.rnn = layers.RecurrentStack(
        self.cell, self.hidden_size, self.num_layers, self.dropout_rate,
        cell_options=self.cell_options,
        hoist_input_projection=self.hoist_input_projection,
        unroll=self.unroll, dtype=self.dtype, param_dtype=self.param_dtype)
    self.output_dropout = nn.Dropout(self.dropout_rate)
    self.readout = nn.Dense(self.vocab_size, dtype=self.dtype,
                            param_dtype=self.param_dtype)

  def initialize_carry(self, batch_size: int):
    return layers.RecurrentStack(
        self.cell, self.hidden_size, self.num_layers,
        cell_options=self.cell_options, parent=None).initialize_carry(
            batch_size)

  def __call__(self, tokens, carries=None, *, train: bool = False):
    if self.embedding == "learned":
      x = self.embed(tokens)
    else:
      x = jax.nn.one_hot(tokens, self.vocab_size, dtype=self.dtype)
    carries, h = self.rnn(x, carries, train=train)
    h = self.output_dropout(h, deterministic=not train)
    return self.readout(h).astype(jnp.float32), carries
