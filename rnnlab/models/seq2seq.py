"""Encoder-decoder with attention for character sequence-to-sequence tasks.

Shape legend: B batch, S source length, T target length, V vocabulary,
E embedding, H decoder hidden size, He encoder output width (2H for a
bidirectional encoder with merge "concat"; "dot" and "scaled_dot" need
He = H, e.g. merge "sum").

  encoder   embed(source) -> RecurrentStack (bidirectional or not, masked by
            source_len) -> outputs [B, S, He]; its last layer's final hidden
            state(s) -> tanh(Dense) -> the decoder's initial carry.
  decoder   embed(previous target token) -> RecurrentStack -> h [B, T, H];
            attention with h as the query over the encoder outputs (padded
            source positions masked) -> context; Luong et al.'s attentional
            state tanh(W_c [h; context]) -> logits. attention="none": the
            decoder sees the source only through its initial carry.

Training uses teacher forcing (`__call__` with decoder_input = BOS +
target); `rnnlab.decode` runs greedy and beam-search decoding with `step`.
Source and target share one character vocabulary and embedding table.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnnlab.errors import UserError
from rnnlab.models import attention as attention_lib
from rnnlab.models import cells as cells_lib
from rnnlab.models import layers

Array = jax.Array
ATTENTION_CHOICES = ("none", *sorted(attention_lib.SCORES))


class Seq2Seq(nn.Module):
  vocab_size: int
  encoder: layers.RecurrentStack
  decoder: layers.RecurrentStack
  attention: str = "additive"
  embed_dim: int = 32

  @classmethod
  def from_config(cls, c, *, vocab_size: int,
                  attention: str = "additive") -> "Seq2Seq":
    """`c` is config.model; `attention` the task's (seq2seq.attention)."""
    if attention not in ATTENTION_CHOICES:
      raise UserError(f"Unknown attention {attention!r}. Valid choices: "
                      f"{', '.join(repr(a) for a in ATTENTION_CHOICES)}.")
    kwargs = layers.stack_kwargs_from_config(c)
    encoder = layers.RecurrentStack(**kwargs, parent=None)
    # The decoder runs one step at a time when decoding: one direction, the
    # plain stack (regularisers that need a whole sequence stay encoder-side).
    decoder_kwargs = dict(kwargs, bidirectional=False, hidden_sizes=None,
                          input_dropout_rate=0.0, output_dropout_rate=0.0,
                          recurrent_dropout_rate=0.0, zoneout_rate=0.0,
                          residual=False, layer_norm=False)
    decoder = layers.RecurrentStack(**decoder_kwargs, parent=None)
    if attention in ("dot", "scaled_dot") and (
        encoder.output_size() != decoder.hidden_size):
      raise UserError(
          f"Attention {attention!r} needs encoder outputs of the same width "
          f"as the decoder ({decoder.hidden_size}); got "
          f"{encoder.output_size()}. With model.bidirectional=True set "
          f"model.bidirectional_merge='sum', or use 'general' or "
          f"'additive'.")
    return cls(vocab_size=vocab_size, encoder=encoder, decoder=decoder,
               attention=attention, embed_dim=c.embed_dim)

  def setup(self):
    self.embed = nn.Embed(self.vocab_size, self.embed_dim)
    self.bridge = nn.Dense(self.decoder.hidden_size)
    if self.attention != "none":
      self.attend = attention_lib.Attention(self.attention)
      self.combine = nn.Dense(self.decoder.hidden_size)
    self.dropout = layers.Dropout(self.decoder.dropout_rate)
    self.readout = nn.Dense(self.vocab_size)

  def encode(self, source: Array, source_len: Array, train: bool = False):
    """-> (encoder outputs [B, S, He], the decoder's initial carries)."""
    carries, outputs = self.encoder(self.embed(source), train=train,
                                    seq_lengths=source_len)
    last = carries[-1]
    hidden_of = cells_lib.CELLS[self.encoder.cell].hidden_of
    if self.encoder.bidirectional:
      summary = jnp.concatenate([hidden_of(last[0]), hidden_of(last[1])], -1)
    else:
      summary = hidden_of(last)
    start = jnp.tanh(self.bridge(summary)).astype(jnp.float32)
    # Every component of every decoder layer's carry starts from the summary.
    decoder_carries = jax.tree.map(lambda z: start,
                                   self.decoder.initialize_carry(
                                       source.shape[0]))
    return outputs, decoder_carries

  def _output(self, h, encoded, source_len, train):
    """h [B, T, H] -> (logits [B, T, V], attention weights [B, T, S])."""
    weights = jnp.zeros(h.shape[:2] + encoded.shape[1:2], jnp.float32)
    if self.attention != "none":
      context, weights = self.attend(h, encoded, key_lengths=source_len)
      h = jnp.tanh(self.combine(jnp.concatenate([h, context], -1)))
    h = self.dropout(h, deterministic=not train)
    return self.readout(h).astype(jnp.float32), weights

  def __call__(self, source: Array, source_len: Array, decoder_input: Array,
               *, train: bool = False):
    """Teacher forcing: -> (logits [B, T, V], weights [B, T, S])."""
    encoded, carries = self.encode(source, source_len, train)
    _, h = self.decoder(self.embed(decoder_input), carries, train=train)
    return self._output(h, encoded, source_len, train)

  def step(self, token: Array, carries: Any, encoded: Array,
           source_len: Array):
    """One decoding step, token [B] -> (logits [B, V], weights [B, S],
    carries). Eval mode."""
    carries, h = self.decoder.step(self.embed(token), carries)
    logits, weights = self._output(h[:, None], encoded, source_len, False)
    return logits[:, 0], weights[:, 0], carries
