"""Optimizers and learning-rate schedules built from `config.optim`.

The chain is: clip by global norm (if clip_norm > 0) -> optimizer with the
scheduled learning rate. Add an optimizer or schedule by writing a builder
and registering it in OPTIMIZERS / SCHEDULES below.
"""
from __future__ import annotations

from typing import Callable

import ml_collections
import optax

from rnnlab.registry import lookup


def constant(c: ml_collections.ConfigDict, total_steps: int):
  del total_steps
  if c.warmup_steps:
    return optax.linear_schedule(0.0, c.learning_rate, c.warmup_steps)
  return optax.constant_schedule(c.learning_rate)


def warmup_cosine(c: ml_collections.ConfigDict, total_steps: int):
  """Linear warm-up to the peak, then cosine decay to final_lr_fraction."""
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=c.learning_rate,
      warmup_steps=c.warmup_steps,
      decay_steps=max(total_steps, c.warmup_steps + 1),
      end_value=c.learning_rate * c.final_lr_fraction)


SCHEDULES: dict[str, Callable[..., optax.Schedule]] = {
    "constant": constant,
    "warmup_cosine": warmup_cosine,
}


def adam(c, lr):
  return optax.adam(lr, b1=c.b1, b2=c.b2, eps=c.eps)


def adamw(c, lr):
  return optax.adamw(lr, b1=c.b1, b2=c.b2, eps=c.eps,
                     weight_decay=c.weight_decay)


def sgd(c, lr):
  return optax.sgd(lr)


OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "adam": adam,
    "adamw": adamw,
    "sgd": sgd,
}


def create_schedule(c: ml_collections.ConfigDict,
                    total_steps: int) -> optax.Schedule:
  return lookup(SCHEDULES, c.schedule, "schedule")(c, total_steps)


def create_optimizer(c: ml_collections.ConfigDict,
                     total_steps: int) -> optax.GradientTransformation:
  """`config.optim` -> optax chain (clip, then the optimizer)."""
  make = lookup(OPTIMIZERS, c.name, "optimizer")
  tx = make(c, create_schedule(c, total_steps))
  if c.clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(c.clip_norm), tx)
  return tx
