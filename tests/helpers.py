"""Helpers shared by all tests: the repository root, the suite's process
settings, tiny configs built on the configs' runlocal variants, tolerances
that hold on any CPU, and the small models the kernel tests share.

Test modules import helpers from here (or tests/models/helpers.py), never
from conftest.py (fixtures only) or from another test module
(tests/test_layering.py checks it).

Tolerances. The suite runs on CPUs with different instruction sets
(AVX-512, or only AVX2+FMA). XLA and the native kernels vectorise and order
sums differently on each, so float32 results of two *different* programs
(a kernel and a reference, a scan and a step-by-step loop, jax and numpy)
can differ by a few ulps from one machine to the next. The rule:

* Different programs computing the same float32 value: compare with
  `assert_float32_close` (rtol 1e-5 plus an atol near zero, scaled to the
  magnitudes), never with rtol below ~1e-5. A longer float32 chain (many
  recurrent steps, Adam steps, sums of thousands of terms, float64
  references) may need more; pass it and say why in a comment.
* Different programs computing the same value with a bfloat16 compute
  dtype (model.dtype="bfloat16"; parameters, carries and gate
  nonlinearities stay float32): `assert_bfloat16_close`, rtol
  BFLOAT16_RTOL (two bfloat16 ulps) and an atol of rtol x the largest
  |value| of each array. Never compare bfloat16 results to float32 ones
  with it: they differ by the bfloat16 rounding of every matmul.
* Exact equality only where the *same* program runs twice (a bitwise
  resume, the same seed, the same function called again), where values are
  exact by construction (copies, masked zeros), or for integers, tokens and
  booleans.
"""
from __future__ import annotations

import os
import pathlib
import textwrap

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rnnlab import base_config
from rnnlab import models
from rnnlab.models import cells
from rnnlab.models import layers

ROOT = pathlib.Path(__file__).resolve().parents[1]


def use_suite_settings():
  """The settings every test process runs with: conftest.py applies them,
  and a test's subprocess that must compile the same programs as the test
  (a bitwise comparison) or reuse its compilation cache calls this too.

  implementation="auto" and the sampler's "auto" follow their fixed rule,
  not a timing, so that which kernel a test runs does not depend on noise
  (subprocesses inherit it); tests of the timing path unset it. Tests
  compile many tiny programs: cache them across runs and skip most XLA
  optimisation passes, which cost more than they save at these sizes.
  """
  os.environ.setdefault("RNNLAB_AUTOTUNE", "0")
  jax.config.update("jax_compilation_cache_dir",
                    os.environ.get("RNNLAB_JAX_CACHE",
                                   str(ROOT / ".pytest_cache" / "jax")))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
  jax.config.update("jax_disable_most_optimizations", True)


# --- tiny configs -----------------------------------------------------------

def tiny_config(name: str = "gru_shakespeare",
                **overrides) -> ml_collections.ConfigDict:
  """configs/<name>.py:runlocal (the seconds-long smoke run every config
  has), the progress bar off, then `overrides`: `section__key=value`
  (e.g. model__hidden_size=8; a top-level key as itself, seed=1)."""
  c = base_config.load_file(f"{ROOT / 'configs' / name}.py:runlocal")
  c.train.progress_bar = False
  return apply_overrides(c, overrides)


def apply_overrides(c: ml_collections.ConfigDict,
                    overrides: dict) -> ml_collections.ConfigDict:
  """Sets `section__key=value` keyword overrides on config `c`."""
  for dotted, value in overrides.items():
    node = c
    *parents, leaf = dotted.split("__")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


# What the trainer tests change in gru_shakespeare:runlocal. Their
# assertions count 30 steps, a log line every 10 and one evaluation at the
# end; a constant rate of 1e-2 without dropout lowers the loss within them,
# and lets a resumed run change train.steps without changing the schedule;
# no sample during training, and a validation pass of 64 streams x 64
# characters (half runlocal's sequential steps) keep them quick.
LM_TEST_OVERRIDES = dict(
    model__dropout_rate=0.0,
    train__steps=30, train__log_every=10, train__eval_every=30,
    train__sample_every=0,
    optim__learning_rate=1e-2, optim__schedule="constant",
    optim__warmup_steps=0,
    eval__num_streams=64, eval__seq_len=64,
    sample__length=20)


def tiny_lm_config(cell: str = "gru", **overrides) -> ml_collections.ConfigDict:
  """The trainer tests' char LM on the real corpus: gru_shakespeare:runlocal
  (2 x 32 units, 16-dim embedding, 8 x 32-character batches) with
  `model.cell=cell`, LM_TEST_OVERRIDES, then `overrides`."""
  return tiny_config("gru_shakespeare", **{
      "model__cell": cell, **LM_TEST_OVERRIDES, **overrides})


# What tests/test_forecast.py changes in gru_forecast_sine:runlocal: 400
# points (280 to train on, 60 forecasts to test), an ARIMA(2, 0, 0)
# baseline (quicker to fit than the config's (2, 0, 2)), and 150 steps at
# 1e-2, enough to halve the loss and beat the naive forecast.
FORECAST_TEST_OVERRIDES = dict(
    forecast__num_points=400,
    forecast__arima_order=(2, 0, 0),
    train__steps=150, train__log_every=10, train__eval_every=150,
    train__checkpoint_every=150,
    optim__learning_rate=1e-2)


def tiny_forecast_config(**overrides) -> ml_collections.ConfigDict:
  """gru_forecast_sine:runlocal with FORECAST_TEST_OVERRIDES, then
  `overrides`."""
  return tiny_config("gru_forecast_sine",
                     **{**FORECAST_TEST_OVERRIDES, **overrides})


# A sweep config file: gru_shakespeare:runlocal made smaller still (8 units,
# one layer, four steps), on a corpus file; trials run it in subprocesses.
SWEEP_CONFIG = """
from rnnlab import base_config


def get_config(arg=""):
  c = base_config.load_file({runlocal!r})
  c.text.path = {corpus!r}
  c.model.hidden_size, c.model.embed_dim, c.model.num_layers = 8, 8, 1
  c.train.batch_size, c.train.seq_len, c.train.steps = 4, 16, 4
  c.train.log_every = c.train.eval_every = c.train.checkpoint_every = 2
  c.train.sample_every = 0
  c.optim.warmup_steps = 0
  c.eval.num_streams, c.eval.seq_len = 4, 16
  return c


def get_sweep(arg=""):
  return {{"model.cell": ["rnn", "gru"], "optim.learning_rate": [0.01, 0.003]}}
"""


def tiny_sweep(directory: pathlib.Path, get_sweep: str | None = None
               ) -> tuple[pathlib.Path, pathlib.Path]:
  """Writes the 2x2 tiny sweep (SWEEP_CONFIG, with `get_sweep`'s source in
  place of its own if given) and its corpus into `directory`; returns
  (config file, sweep root). Nothing runs."""
  corpus = directory / "corpus.txt"
  corpus.write_text("to be or not to be, that is the question.\n" * 200)
  text = SWEEP_CONFIG.format(
      runlocal=f"{ROOT / 'configs' / 'gru_shakespeare.py'}:runlocal",
      corpus=str(corpus))
  if get_sweep:
    text = text[:text.index("def get_sweep")] + textwrap.dedent(get_sweep)
  config = directory / "tiny_sweep.py"
  config.write_text(text)
  return config, directory / "sweep"


# --- tolerances -------------------------------------------------------------

# About 80 float32 ulps near 1: room for a different summation order or
# instruction set, still far below any real bug's error.
FLOAT32_RTOL = 1e-5
# For expected values at or near zero, where rtol allows nothing; for O(1)
# values. Scale it to the magnitudes involved (see `float32_atol`).
FLOAT32_ATOL = 1e-6


def float32_atol(*values, rtol: float = FLOAT32_RTOL,
                 floor: float = FLOAT32_ATOL) -> float:
  """An absolute tolerance for float32 values of these magnitudes:
  rtol x the largest |value| in `values` (arrays or pytrees), at least
  `floor`. For checks that take only an atol, or for elements near zero
  among large ones (a sum whose terms cancel)."""
  largest = max((float(np.max(np.abs(np.asarray(leaf, np.float64))))
                 for leaf in jax.tree.leaves(values) if np.size(leaf)),
                default=0.0)
  return max(floor, rtol * largest)


def assert_float32_close(actual, expected, *, rtol: float = FLOAT32_RTOL,
                         atol: float = FLOAT32_ATOL, err_msg: str = ""):
  """np.testing.assert_allclose for float32 results of different programs,
  on arrays or on matching pytrees (leaf by leaf, the path in the message).
  `expected` may be a scalar or a list where `actual` is one array."""

  def check(path, a, e):
    where = jax.tree_util.keystr(path)
    msg = " ".join(m for m in (err_msg, where) if m)
    np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol,
                               atol=atol, err_msg=msg)

  jax.tree_util.tree_map_with_path(check, actual, expected)


# bfloat16 keeps 8 significant bits: one ulp is 2**-8 to 2**-7 of a value.
# Two programs that compute the same thing with a bfloat16 compute dtype
# round at the same points, but where their float32 partial results differ
# by a few float32 ulps (another summation order) a rounding can land on
# the neighbouring bfloat16 value, and the recurrence carries that on: two
# ulps of room. Sums of many bfloat16-rounded terms may need more; pass it
# and say why.
BFLOAT16_RTOL = 2 * 2**-7


def assert_bfloat16_close(actual, expected, *, rtol: float = BFLOAT16_RTOL,
                          err_msg: str = ""):
  """Like `assert_float32_close`, for results computed with a bfloat16
  compute dtype: |actual - expected| <= rtol * (|expected| + M) element by
  element, M the largest |expected| of that leaf (an element near zero can
  inherit the rounding of the large terms it came from)."""

  def check(path, a, e):
    where = jax.tree_util.keystr(path)
    msg = " ".join(m for m in (err_msg, where) if m)
    e = np.asarray(e, np.float32)
    largest = float(np.max(np.abs(e))) if e.size else 0.0
    np.testing.assert_allclose(np.asarray(a, np.float32), e, rtol=rtol,
                               atol=rtol * largest, err_msg=msg)

  jax.tree_util.tree_map_with_path(check, actual, expected)


# --- small models the kernel tests share ------------------------------------

LM_VOCAB_SIZE = 29  # make_lm's vocabulary


def make_lm(cell: str, scale: float = 2.0, **model):
  """A char LM of gru_shakespeare:runlocal's shape (2 x 32 units) with an
  8-dim embedding, no dropout, `model.cell=cell` and `model` keys, on
  LM_VOCAB_SIZE tokens: (model, params x scale)."""
  c = tiny_config(model__cell=cell, model__embed_dim=8,
                  model__dropout_rate=0.0,
                  **{f"model__{key}": value for key, value in model.items()})
  lm = models.create_model(c.model, vocab_size=LM_VOCAB_SIZE)
  params = lm.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))["params"]
  # Larger weights than the init, so that the distributions are peaked and
  # the carries saturate: a wrong gate or weight shows. Not much larger: the
  # dynamics turn chaotic, and float32 rounding (which differs between any
  # two summation orders) then grows over the steps.
  return lm, jax.tree.map(lambda p: p * scale, params)


def assert_close(got, want, tol: float = 1e-5):
  """max |got - want| / max(1, max |want|) <= tol: one error for the whole
  array, relative to its largest value (the native kernel tests' rule)."""
  got, want = np.asarray(got), np.asarray(want)
  err = np.abs(got - want).max() / max(1.0, np.abs(want).max())
  assert err <= tol, f"relative error {err:.2e} > {tol:.0e}"


def native_and_scan(cell_name: str, hidden: int, shape, fn):
  """fn(layer, variables, xs) for a `cell_name` layer run by the native
  kernel and by nn.scan, with the same parameters: (native, scan)."""
  cell = cells.create_cell(cell_name, hidden, {})
  xs = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)
  out = []
  for implementation in ("native", "scan"):
    layer = layers.Recurrent(cell, implementation=implementation)
    out.append(fn(layer, layer.init(jax.random.key(0), xs), xs))
  return tuple(out)
