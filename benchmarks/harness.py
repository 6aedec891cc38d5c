"""Shared pieces of the speed benchmarks: shapes, FLOP counts, timing.

Shapes follow the speed issue: batch 64, sequence 128, embedding 64,
hidden 256, 2 layers, vocabulary 65, fp32; plus hidden 512 and 1024 at
batch 32.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import statistics

# Timing lives in the package (the GPU check uses it too); re-exported here.
from rnnlab.throughput import interleaved_throughput  # pylint: disable=unused-import
from rnnlab.throughput import steps_for  # pylint: disable=unused-import
from rnnlab.throughput import timed  # pylint: disable=unused-import

SEQ_LEN, EMBED, LAYERS, VOCAB = 128, 64, 2, 65
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


@dataclasses.dataclass(frozen=True)
class Shape:
  name: str
  batch: int
  hidden: int
  seq_len: int = SEQ_LEN
  embed: int = EMBED
  layers: int = LAYERS
  vocab: int = VOCAB

  @property
  def tokens(self) -> int:
    return self.batch * self.seq_len


SHAPES = {
    "ref": Shape("ref", batch=64, hidden=256),
    "h512": Shape("h512", batch=32, hidden=512),
    "h1024": Shape("h1024", batch=32, hidden=1024),
}


def forward_flops_per_token(cell: str, layers: int, embed: int, hidden: int,
                            vocab: int) -> float:
  """Matmul FLOPs of one token through the model (sampling does this once
  per character): per layer 2 (D_in + H) G H for the gates, readout 2 H V.
  Elementwise work and the embedding gather are not counted."""
  g = GATES[cell]
  flops = 0.0
  for layer in range(layers):
    d_in = embed if layer == 0 else hidden
    flops += 2 * (d_in + hidden) * g * hidden
  return flops + 2 * hidden * vocab


def train_flops_per_token(cell: str, s: Shape) -> float:
  """Matmul FLOPs of one training token: 3x the forward (fwd + 2x bwd)."""
  return 3 * forward_flops_per_token(cell, s.layers, s.embed, s.hidden,
                                     s.vocab)


def summarize(samples: list[float]) -> tuple[float, float]:
  """Median and the half-spread (max-min)/2 relative to the median."""
  med = statistics.median(samples)
  return med, (max(samples) - min(samples)) / 2 / med


def machine() -> str:
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  return f"{cpu}, {os.cpu_count()} cores, {platform.system()}"
