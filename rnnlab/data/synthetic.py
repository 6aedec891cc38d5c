"""Long-range memory problems with a configurable lag, generated on the fly.

Two classic tests of whether a recurrent network can carry information over
many steps (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016):

  adding       inputs [B, T, 2] float32, T = lag. Channel 0 holds values
               drawn uniformly from [0, 1); channel 1 is a marker that is 1
               at exactly two positions and 0 elsewhere: one position drawn
               uniformly from the first half [0, T//2), the other from the
               second half [T//2, T) (the variant of Arjovsky et al. 2016
               and Le et al. 2015). target [B] float32 = the sum of the two
               marked values. Predicting the mean, 1, gives an MSE of
               Var(U1 + U2) = 2/12 = 1/6 ~ 0.167.
  copy_memory  tokens: 0 = blank, 1..A = symbols, A+1 = delimiter. inputs
               [B, T] int32 with T = 2S + lag + 1: S symbols drawn uniformly
               from 1..A, then `lag` blanks, the delimiter, then S blanks.
               targets [B, T]: blank everywhere except the last S positions,
               which hold the S symbols in order; mask [B, T] float32 is 1
               at those S output positions. So symbol i must be held for
               S + lag + 1 steps. This is Arjovsky et al.'s problem with
               their T = lag + 1 (S = 10, A = 8 there); a model that ignores
               the inputs scores ln(A) nats per output position.

Batches come from `np.random.default_rng([seed, stream, index])`: training
batch `step` is a pure function of (seed, step) (stream 1), and the fixed
validation and test sets are drawn from their own streams (2, 3), so they
never coincide with a training batch's generator.
"""
from __future__ import annotations

import numpy as np

from rnnlab.errors import UserError

TRAIN_STREAM = 1
SPLIT_STREAMS = {"val": 2, "test": 3}

ADDING_BASELINE_MSE = 1.0 / 6.0  # always predicting 1


def rng_for(seed: int, stream: int, index: int = 0) -> np.random.Generator:
  return np.random.default_rng([seed, stream, index])


def train_rng(seed: int, step: int) -> np.random.Generator:
  if step < 0:
    raise UserError(f"Training step must be >= 0, got {step}.")
  return rng_for(seed, TRAIN_STREAM, step)


def split_rng(seed: int, split: str) -> np.random.Generator:
  if split not in SPLIT_STREAMS:
    raise UserError(f"Unknown split {split!r}. Valid choices: "
                    f"{', '.join(SPLIT_STREAMS)}.")
  return rng_for(seed, SPLIT_STREAMS[split])


def adding_batch(rng: np.random.Generator, batch_size: int, lag: int
                 ) -> dict[str, np.ndarray]:
  """{"inputs": [B, T, 2] float32, "targets": [B] float32}, T = lag."""
  if lag < 2:
    raise UserError(f"The adding problem needs synthetic.lag >= 2 (one marker in "
                    f"each half), got {lag}.")
  values = rng.uniform(0.0, 1.0, (batch_size, lag)).astype(np.float32)
  half = lag // 2
  first = rng.integers(0, half, batch_size)
  second = rng.integers(half, lag, batch_size)
  rows = np.arange(batch_size)
  markers = np.zeros((batch_size, lag), np.float32)
  markers[rows, first] = 1.0
  markers[rows, second] = 1.0
  targets = values[rows, first] + values[rows, second]
  return {"inputs": np.stack([values, markers], axis=-1),
          "targets": targets.astype(np.float32)}


def copy_memory_vocab(alphabet: int) -> tuple[int, int]:
  """(input vocabulary size, output vocabulary size): inputs add the
  delimiter (id alphabet + 1) to blank + symbols; outputs never hold it."""
  return alphabet + 2, alphabet + 1


def copy_memory_batch(rng: np.random.Generator, batch_size: int, lag: int,
                      copy_length: int = 10, alphabet: int = 8
                      ) -> dict[str, np.ndarray]:
  """{"inputs", "targets": [B, T] int32, "mask": [B, T] float32},
  T = 2 * copy_length + lag + 1 (layout in the module docstring)."""
  if lag < 0 or copy_length < 1 or alphabet < 2:
    raise UserError(
        f"copy_memory needs synthetic.lag >= 0, synthetic.copy_length >= 1 "
        f"and synthetic.alphabet >= 2; got lag={lag}, copy_length={copy_length}, "
        f"alphabet={alphabet}.")
  s = copy_length
  steps = 2 * s + lag + 1
  symbols = rng.integers(1, alphabet + 1, (batch_size, s)).astype(np.int32)
  inputs = np.zeros((batch_size, steps), np.int32)
  inputs[:, :s] = symbols
  inputs[:, s + lag] = alphabet + 1  # the delimiter
  targets = np.zeros((batch_size, steps), np.int32)
  targets[:, -s:] = symbols
  mask = np.zeros((batch_size, steps), np.float32)
  mask[:, -s:] = 1.0
  return {"inputs": inputs, "targets": targets, "mask": mask}
