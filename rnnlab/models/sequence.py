"""A recurrent stack with a per-step linear readout, for real-valued or token
inputs (the synthetic memory problems of `rnnlab/tasks/synthetic.py`).

Shape legend: B batch, T time, D input features, V input vocabulary,
O outputs, H hidden size.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnnlab.errors import UserError
from rnnlab.models import layers


class SequenceModel(nn.Module):
  """inputs -> (outputs [B, T, O] float32, carries).

  inputs: [B, T, D] float features, or [B, T] int tokens when
  `input_vocab_size` > 0 (fed one-hot, so a token costs no embedding
  parameters). Every step gets the readout; a task that scores only the last
  step slices it ([B, T, O] x O is negligible next to the recurrence).
  """

  output_size: int
  rnn: layers.RecurrentStack
  input_vocab_size: int = 0

  @classmethod
  def from_config(cls, c, *, output_size: int,
                  input_vocab_size: int = 0) -> "SequenceModel":
    if c.bidirectional:
      raise UserError(
          "model.bidirectional=True cannot be used with model.name="
          "'sequence': the backward direction would see the whole sequence "
          "before the first output, so the lag would not be tested.")
    rnn = layers.RecurrentStack(**layers.stack_kwargs_from_config(c),
                                parent=None)
    return cls(output_size=output_size, rnn=rnn,
               input_vocab_size=input_vocab_size)

  def initialize_carry(self, batch_size: int) -> tuple[Any, ...]:
    return self.rnn.initialize_carry(batch_size)

  def setup(self):
    self.dropout = layers.Dropout(self.rnn.dropout_rate)
    self.readout = nn.Dense(self.output_size, dtype=self.rnn.dtype,
                            param_dtype=self.rnn.param_dtype)

  def __call__(self, inputs: jax.Array, carries=None, *, train: bool = False):
    if self.input_vocab_size:
      xs = jax.nn.one_hot(inputs, self.input_vocab_size, dtype=self.rnn.dtype)
    else:
      xs = inputs.astype(self.rnn.dtype)
    carries, h = self.rnn(xs, carries, train=train)
    h = self.dropout(h, deterministic=not train)
    return self.readout(h).astype(jnp.float32), carries
