"""The FLOP counts that benchmarks/ divide by, against a hand count."""
from __future__ import annotations

from benchmarks import harness


def test_flops_per_token_of_the_default_gru():
  # 2 x 256 GRU, embedding 64, vocabulary 65: 2 (64 + 256) 3 256 for the
  # first layer's gates, 2 (256 + 256) 3 256 for the second's, 2 256 65 for
  # the readout.
  forward = 2 * 320 * 768 + 2 * 512 * 768 + 2 * 256 * 65
  assert harness.forward_flops_per_token("gru", 2, 64, 256, 65) == forward
  shape = harness.Shape("ref", batch=64, hidden=256)
  assert (shape.layers, shape.embed, shape.vocab) == (2, 64, 65)
  assert harness.train_flops_per_token("gru", shape) == 3 * forward
  # An LSTM has four gates, an Elman RNN one.
  assert harness.forward_flops_per_token("lstm", 1, 10, 20, 5) == (
      2 * 30 * 80 + 2 * 20 * 5)
  assert harness.forward_flops_per_token("rnn", 1, 10, 20, 5) == (
      2 * 30 * 20 + 2 * 20 * 5)
