"""The FLOP counts that benchmarks/ divide by, against a hand count; the
tile benchmark's build."""
from __future__ import annotations

import subprocess

from benchmarks import harness
from benchmarks import tile_matmul
from rnnlab.native import build


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


def test_tile_matmul_builds_the_kernel_and_counts_its_flops(tmp_path):
  """The tile benchmark times the training step's products with
  recurrence.cc's own MatMul, which it includes whole: it must still
  build and run when the kernel changes."""
  s = harness.SHAPES["h512"]
  assert tile_matmul.products("lstm", s) == [
      ("forward h @ W_h", 32, 512, 2048, 128 * 512),
      ("backward d_hp @ W_h^T", 32, 2048, 512, 2048)]
  exe = tile_matmul.compile_tile(build.default_isa(), "4x3", tmp_path)
  out = subprocess.run([str(exe), "8", "32", "48", "40", "3"], check=True,
                       capture_output=True, text=True).stdout.split()
  assert len(out) == 3 and all(float(x) > 0 for x in out)
