"""Character (or token) language model: embed -> recurrent stack -> logits.

Shape legend: B batch, T time, V vocabulary, E embedding, H hidden size.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnnlab.errors import UserError
from rnnlab.models import attention as attention_lib
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

  def step(self, tokens, carries, deltas=None):
    """One token per sequence: tokens [B] -> (logits [B, V], carries).
    deltas: see `RecurrentStack.step`."""
    carries, h = self.rnn.step(self._inputs(tokens), carries, deltas)
    return self.readout(h).astype(jnp.float32), carries

  def input_table(self):
    """The first layer's input term (biases included) for every token:
    [V, G*H]. The native sampler looks rows up instead of multiplying."""
    tokens = jnp.arange(self.vocab_size)
    return self.rnn.layers[0].project_inputs(self._inputs(tokens))


class AttentionLM(RecurrentLM):
  """A recurrent LM whose output layer also sees causal attention over its
  own recent hidden states.

  For the hidden state h_t of position t: context_t = attention(query h_t,
  keys = the last `window` hidden states up to and including t), then
  logits = readout(tanh(W_c [h_t; context_t])). The states attended over
  span chunk boundaries: carries = (stack carries, memory [B, W, H] of the
  last W states in order, count [B] of valid ones), so training windows
  (which start empty), streamed evaluation and step-by-step sampling all
  compute the same function. `step` is `__call__` on one token.
  """

  attention: str = "scaled_dot"
  window: int = 128

  @classmethod
  def from_config(cls, c, *, vocab_size: int) -> "AttentionLM":
    lookup(attention_lib.SCORES, c.attention_score, "attention score")
    base = RecurrentLM.from_config(c, vocab_size=vocab_size)
    return cls(vocab_size=base.vocab_size, rnn=base.rnn,
               embed_dim=base.embed_dim, embedding=base.embedding,
               embed_init_std=base.embed_init_std, attention=c.attention_score,
               window=c.attention_window)

  def setup(self):
    super().setup()
    self.attend = attention_lib.Attention(self.attention,
                                          dtype=self.rnn.dtype)
    self.combine = nn.Dense(self.rnn.output_size(), dtype=self.rnn.dtype,
                            param_dtype=self.rnn.param_dtype)

  def initialize_carry(self, batch_size: int):
    width = self.rnn.output_size()
    return (self.rnn.initialize_carry(batch_size),
            jnp.zeros((batch_size, self.window, width), jnp.float32),
            jnp.zeros((batch_size,), jnp.int32))

  def _attend(self, h, memory, count):
    """h [B, T, H] after `count` valid states in memory [B, W, H]."""
    steps, window = h.shape[1], self.window
    keys = jnp.concatenate([memory.astype(h.dtype), h], axis=1)
    # Stream positions relative to the chunk start: memory slot i holds
    # position i - W (valid for the last `count` slots), chunk j holds j.
    key_pos = jnp.arange(window + steps) - window
    valid = jnp.concatenate([
        jnp.arange(window)[None, :] >= window - count[:, None],
        jnp.ones((h.shape[0], steps), bool)], axis=1)  # [B, W+T]
    query_pos = jnp.arange(steps)
    in_window = ((key_pos[None, :] <= query_pos[:, None]) &
                 (key_pos[None, :] > query_pos[:, None] - window))
    mask = valid[:, None, :] & in_window[None]
    context, weights = self.attend(h, keys, mask=mask)
    memory = keys[:, -window:].astype(jnp.float32)
    count = jnp.minimum(count + steps, window)
    return jnp.tanh(self.combine(jnp.concatenate([h, context], -1))), (
        memory, count, weights)

  def __call__(self, tokens, carries=None, *, train: bool = False):
    if carries is None:
      carries = self.initialize_carry(tokens.shape[0])
    stack_carries, memory, count = carries
    stack_carries, h = self.rnn(self._inputs(tokens), stack_carries,
                                train=train)
    out, (memory, count, _) = self._attend(h, memory, count)
    out = self.dropout(out, deterministic=not train)
    return (self.readout(out).astype(jnp.float32),
            (stack_carries, memory, count))

  def step(self, tokens, carries):
    logits, carries = self(tokens[:, None], carries)
    return logits[:, 0], carries
