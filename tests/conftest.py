"""Shared test set-up: compilation cache, corpus lookup, tiny configs."""
from __future__ import annotations

import os
import pathlib

import jax
import pytest

from rnnlab.data import text

ROOT = pathlib.Path(__file__).resolve().parents[1]

# implementation="auto" and the sampler's "auto" follow their fixed rule,
# not a timing, so that which kernel a test runs does not depend on noise
# (subprocesses inherit it). Tests of the timing path unset it.
os.environ.setdefault("RNNLAB_AUTOTUNE", "0")

# Tests compile many tiny programs: cache them across runs and skip most XLA
# optimisation passes, which cost more than they save at these sizes.
jax.config.update("jax_compilation_cache_dir",
                  os.environ.get("RNNLAB_JAX_CACHE",
                                 str(ROOT / ".pytest_cache" / "jax")))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
jax.config.update("jax_disable_most_optimizations", True)


@pytest.fixture(scope="session")
def corpus_path() -> pathlib.Path:
  """The real Tiny Shakespeare file, found as a user's machine would.

  CI sets RNNLAB_DATA_DIR; elsewhere the cache or a download provides it.
  A missing corpus fails (with the how-to message); it never skips.
  """
  return text.resolve_corpus("tinyshakespeare")


def tiny_lm_config(cell: str = "gru", **overrides):
  """A seconds-long char-LM config on the real corpus."""
  from rnnlab import base_config  # pylint: disable=g-import-not-at-top
  c = base_config.get_config()
  c.model.cell = cell
  c.model.hidden_size = 32
  c.model.embed_dim = 16
  c.model.num_layers = 2
  c.model.dropout_rate = 0.0
  c.train.batch_size = 8
  c.train.seq_len = 32
  c.train.steps = 30
  c.train.log_every = 10
  c.train.eval_every = 30
  c.train.checkpoint_every = 10
  c.train.sample_every = 0
  c.train.progress_bar = False
  c.optim.learning_rate = 1e-2
  c.optim.schedule = "constant"  # resume tests change train.steps
  c.optim.warmup_steps = 0
  c.eval.num_streams = 64
  c.eval.seq_len = 64
  c.sample.length = 20
  return apply_overrides(c, overrides)


def apply_overrides(c, overrides: dict):
  """Sets `section__key=value` keyword overrides on config `c`."""
  for dotted, value in overrides.items():
    node = c
    *parents, leaf = dotted.split("__")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c
