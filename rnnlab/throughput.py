"""Timing shared by the GPU check (`rnnlab.gpu_check`) and benchmarks/:
interleaved tokens/s of several runners, a runner of a jitted training
step, and the PyTorch peer LM.

A runner is an object with `run(n)`: n training steps, returning once the
device is done. The PyTorch peer is the same LM as rnnlab's char LM
(embedding -> nn.LSTM/GRU/RNN -> dropout -> linear), clip 1.0 + Adam;
torch is imported only when one is built (the bench extra).
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np


def timed(fn: Callable[[], None]) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def steps_for(seconds_per_step: float, target_s: float = 1.0) -> int:
  """Steps per timed run so that each run lasts about `target_s`."""
  return max(1, round(target_s / max(seconds_per_step, 1e-6)))


def interleaved_throughput(runners: dict, tokens_per_step: int, repeats: int,
                           seconds: float, probe_steps: int = 1
                           ) -> dict[str, list[float]]:
  """Tokens/s samples per runner: warm up each, size its timed runs to
  ~`seconds`, then time them in turn, `repeats` rounds, so that slow drifts
  of the machine hit all runners alike."""
  steps = {}
  for name, r in runners.items():
    r.run(2)  # compile / warm up
    per_step = timed(lambda: r.run(probe_steps)) / probe_steps
    steps[name] = steps_for(per_step, seconds)
  samples = {name: [] for name in runners}
  for _ in range(repeats):
    for name, r in runners.items():
      elapsed = timed(lambda: r.run(steps[name]))
      samples[name].append(steps[name] * tokens_per_step / elapsed)
  return samples


class JaxRunner:
  """Times a jitted `step(state, batch, rng) -> (state, metrics, ...)` of
  the char LM on one fixed random batch of shape `s` (vocab, batch,
  seq_len)."""

  def __init__(self, state, step_fn, s, seed: int = 0):
    import jax  # pylint: disable=g-import-not-at-top
    self.jax = jax
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, s.vocab, (s.batch, s.seq_len + 1), np.int32)
    self.batch = {"inputs": jax.device_put(tokens[:, :-1]),
                  "targets": jax.device_put(tokens[:, 1:])}
    self.state, self.step_fn = state, step_fn
    self.rng = jax.random.key(seed)

  def run(self, n: int):
    metrics = None
    for _ in range(n):
      self.state, metrics = self.step_fn(self.state, self.batch,
                                         self.rng)[:2]
    self.jax.block_until_ready(metrics)


class TorchRunner:
  """The PyTorch peer of the char LM at shape `s` (vocab, embed, hidden,
  layers, batch, seq_len), on `device` ("cpu"; "cuda" uses cuDNN), with
  `threads` intra-op threads when given."""

  def __init__(self, cell: str, s, device: str = "cpu",
               threads: int | None = None):
    import torch  # pylint: disable=g-import-not-at-top
    from torch import nn  # pylint: disable=g-import-not-at-top
    if threads:
      torch.set_num_threads(threads)
    torch.manual_seed(0)
    rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]

    class TorchLM(nn.Module):

      def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(s.vocab, s.embed)
        self.rnn = rnn_cls(s.embed, s.hidden, num_layers=s.layers,
                           batch_first=True, dropout=0.1)
        self.drop = nn.Dropout(0.1)
        self.out = nn.Linear(s.hidden, s.vocab)

      def forward(self, x):
        h, _ = self.rnn(self.embed(x))
        return self.out(self.drop(h))

    self.torch = torch
    self.model = TorchLM().train().to(device)
    self.opt = torch.optim.Adam(self.model.parameters(), lr=2e-3)
    tokens = torch.from_numpy(np.random.default_rng(0).integers(
        0, s.vocab, (s.batch, s.seq_len + 1))).to(device)
    self.x, self.y = tokens[:, :-1], tokens[:, 1:].reshape(-1)
    self.vocab = s.vocab

  def run(self, n: int):
    functional = self.torch.nn.functional
    for _ in range(n):
      self.opt.zero_grad(set_to_none=True)
      logits = self.model(self.x)
      loss = functional.cross_entropy(logits.reshape(-1, self.vocab), self.y)
      loss.backward()
      self.torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
      self.opt.step()
    float(loss.detach())  # waits for the device
