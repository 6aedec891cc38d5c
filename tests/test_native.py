"""The native kernels: the C sampler (the same model, the same draws as the
jax scan) and the build and fallback of both kernels. The training loops'
numerics are in tests/models/test_cells.py."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import base_config
from rnnlab import models
from rnnlab import native
from rnnlab import sample
from rnnlab.errors import UserError
from rnnlab.models import cells
from rnnlab.models import layers
from rnnlab.native import recurrence
from tests.conftest import ROOT

VOCAB = 29


def make_lm(cell, scale=2.0, **model):
  c = base_config.get_config().model
  c.cell, c.hidden_size, c.embed_dim, c.num_layers = cell, 32, 8, 2
  c.dropout_rate = 0.0
  for key, value in model.items():
    c[key] = value
  lm = models.create_model(c, vocab_size=VOCAB)
  params = lm.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))["params"]
  # Larger weights than the init, so that the distributions are peaked and
  # the carries saturate: a wrong gate or weight shows. Not much larger: the
  # dynamics turn chaotic, and float32 rounding (which differs between any
  # two summation orders) then grows over the steps.
  return lm, jax.tree.map(lambda p: p * scale, params)


def assert_close(got, want, tol=1e-5):
  """max |got - want| / max(1, max |want|) <= tol."""
  got, want = np.asarray(got), np.asarray(want)
  err = np.abs(got - want).max() / max(1.0, np.abs(want).max())
  assert err <= tol, f"relative error {err:.2e} > {tol:.0e}"


def native_and_scan(cell_name, hidden, shape, fn):
  """fn(layer, variables, xs) for a `cell_name` layer run by the native
  kernel and by nn.scan, with the same parameters: (native, scan)."""
  cell = cells.create_cell(cell_name, hidden, {})
  xs = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)
  out = []
  for implementation in ("native", "scan"):
    layer = layers.Recurrent(cell, implementation=implementation)
    out.append(fn(layer, layer.init(jax.random.key(0), xs), xs))
  return tuple(out)


CASES = {
    "rnn-tanh": ("rnn", {}),
    "rnn-relu": ("rnn", {"activation": "relu", "scale": 1.0}),  # unbounded
    "lstm": ("lstm", {}),
    "gru": ("gru", {}),
    # Unequal layer sizes (not multiples of 16: narrow column blocks and
    # thread shares), one-hot input, three layers.
    "gru-sizes-onehot": ("gru", {"hidden_sizes": (40, 24, 52),
                                 "num_layers": 3, "embedding": "one_hot"}),
    "lstm-sizes": ("lstm", {"hidden_sizes": (20, 36)}),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("batch,threads", [(1, 2), (3, 3)])
def test_native_logits_match_the_model_and_draws_follow_the_rule(
    case, batch, threads):
  cell, options = CASES[case]
  lm, params = make_lm(cell, **options)
  rng = np.random.default_rng(batch)
  prime = jnp.asarray(rng.integers(0, VOCAB, (batch, 5)), jnp.int32)
  key, length, temperature = jax.random.key(11), 40, 0.9
  sampler = sample.Sampler(lm, params, "native", threads=threads)
  tokens, logits = sampler.generate(prime, key, length=length,
                                    temperature=temperature)
  assert tokens.shape == (batch, length) and tokens.dtype == np.int32
  # The model itself, teacher-forced on prime + the drawn tokens, gives the
  # logits every token was drawn from.
  full, _ = lm.apply({"params": params},
                     jnp.concatenate([prime, jnp.asarray(tokens)], axis=1))
  assert_close(logits, full[:, 4:-1])
  # Each token is argmax(logits / T + Gumbel noise of its step's seed).
  seeds = sample.step_seeds(key, length)
  for i in range(length):
    noise = sample.gumbel_noise(seeds[i], (batch, VOCAB))
    expected = np.argmax(logits[:, i] / temperature + np.asarray(noise), -1)
    np.testing.assert_array_equal(tokens[:, i], expected)


@pytest.mark.parametrize("case", ["lstm", "gru-sizes-onehot"])
def test_native_and_jax_backends_draw_the_same_text(case):
  cell, options = CASES[case]
  lm, params = make_lm(cell, **options)
  prime = jnp.asarray([[1, 2, 3]], jnp.int32)
  for temperature, top_k in [(0.8, 0), (1.5, 4), (0.0, 0)]:
    drawn = {}
    for backend in ("jax", "native"):
      drawn[backend] = sample.Sampler(lm, params, backend).generate(
          prime, jax.random.key(3), length=80, temperature=temperature,
          top_k=top_k)
    np.testing.assert_array_equal(drawn["native"][0], drawn["jax"][0])
    assert_close(drawn["native"][1], drawn["jax"][1])


def test_top_k_limits_the_native_draws():
  lm, params = make_lm("gru")
  tokens, logits = sample.Sampler(lm, params, "native").generate(
      jnp.asarray([[0]], jnp.int32), jax.random.key(1), length=80,
      temperature=5.0, top_k=2)
  top2 = np.argsort(-logits[0], axis=-1)[:, :2]
  assert all(t in top2[i] for i, t in enumerate(tokens[0]))
  assert len(set(tokens[0].tolist())) > 2  # hot: not one token throughout


def test_thread_counts_agree():
  lm, params = make_lm("gru", hidden_sizes=(64, 48))
  sampler = {t: sample.Sampler(lm, params, "native", threads=t)
             for t in (1, 2, 4)}
  out = {t: s.generate(jnp.asarray([[5]], jnp.int32), jax.random.key(0),
                       length=60, temperature=0.7)
         for t, s in sampler.items()}
  for t in (2, 4):
    np.testing.assert_array_equal(out[t][0], out[1][0])
    assert_close(out[t][1], out[1][1])


def test_auto_picks_native_for_batch_one_and_jax_for_wide_batches():
  lm, params = make_lm("gru")
  sampler = sample.Sampler(lm, params, "auto")
  assert sampler.backend_for(1) == "native"
  assert sampler.backend_for(sample.NATIVE_MAX_BATCH + 1) == "jax"
  assert sample.Sampler(lm, params, "jax").backend_for(1) == "jax"


@pytest.mark.parametrize("options,reason", [
    ({"name": "attention_lm"}, "AttentionLM"),
    ({"layer_norm": True}, "layer-norm"),
    ({"reset_after": False}, "reset-before GRU"),
    ({"dtype": "bfloat16"}, "bfloat16"),
])
def test_models_outside_the_kernel_fall_back_or_fail_clearly(options, reason):
  lm, params = make_lm("gru", **options)
  assert reason in native.unsupported(lm)
  assert sample.Sampler(lm, params, "auto").backend_for(1) == "jax"
  with pytest.raises(UserError, match=f"backend=native.*{reason}"):
    sample.Sampler(lm, params, "native")


def test_unknown_backend_names_the_choices():
  lm, params = make_lm("gru")
  with pytest.raises(UserError, match=r"'cuda'.*'auto', 'jax', 'native'"):
    sample.Sampler(lm, params, "cuda")


def test_without_a_compiler_auto_falls_back_and_native_explains(
    monkeypatch, tmp_path):
  monkeypatch.setenv("RNNLAB_NATIVE_CACHE", str(tmp_path))
  monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
  native.library.cache_clear()
  native.available.cache_clear()
  try:
    reason = native.available()
    assert reason and "false" in reason and "failed" in reason
    lm, params = make_lm("gru")
    assert sample.Sampler(lm, params, "auto").backend_for(1) == "jax"
    with pytest.raises(UserError, match="failed"):
      sample.Sampler(lm, params, "native")
    assert not list(tmp_path.glob("generate-*"))  # nothing half-built left
  finally:
    native.library.cache_clear()
    native.available.cache_clear()


def test_the_library_is_built_once_and_reused(monkeypatch, tmp_path):
  monkeypatch.setenv("RNNLAB_NATIVE_CACHE", str(tmp_path))
  native.library.cache_clear()
  native.available.cache_clear()
  try:
    native.library()
    built = list(tmp_path.glob("generate-*.so"))
    assert len(built) == 1
    mtime = built[0].stat().st_mtime_ns
    native.library.cache_clear()
    native.available.cache_clear()
    native.library()
    assert built[0].stat().st_mtime_ns == mtime
  finally:
    native.library.cache_clear()
    native.available.cache_clear()


def test_training_without_a_compiler_falls_back_to_the_xla_kernels(
    monkeypatch, tmp_path):
  monkeypatch.setenv("RNNLAB_NATIVE_CACHE", str(tmp_path))
  monkeypatch.setenv("CXX", "false")
  recurrence.register.cache_clear()
  recurrence.unavailable.cache_clear()
  try:
    assert "failed" in recurrence.unavailable()
    native_ys, scan_ys = native_and_scan(
        "lstm", 8, (2, 5, 3), lambda layer, v, xs: layer.apply(v, xs)[1])
    assert_close(native_ys, scan_ys)
  finally:
    recurrence.register.cache_clear()
    recurrence.unavailable.cache_clear()


def test_kernels_run_on_the_threads_openmp_allows(tmp_path):
  """OMP_THREAD_LIMIT=1 (a shared node's policy): the training loops split
  over the one thread they get, and batch-1 sampling still works."""
  script = textwrap.dedent("""
      import jax, jax.numpy as jnp
      from rnnlab import sample
      from tests.test_native import assert_close, make_lm, native_and_scan
      grads = native_and_scan("gru", 40, (3, 6, 5), lambda layer, v, xs:
          jax.grad(lambda v: jnp.sum(layer.apply(v, xs)[1] ** 2))(v))
      jax.tree.map(assert_close, *grads)
      lm, params = make_lm("gru", hidden_size=128)  # 2 threads' worth
      tokens, _ = sample.Sampler(lm, params, "native").generate(
          jnp.asarray([[1]], jnp.int32), jax.random.key(0), length=20)
      assert tokens.shape == (1, 20)
      print("ok")
      """)
  env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
  out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]


def test_a_subclassed_cell_is_not_taken_for_the_builtin():
  """The kernels hard-code the built-in gates: a subclass (which may change
  them) runs the XLA paths."""

  class PeepholeLSTM(cells.LSTMCell):
    pass

  assert recurrence.cell_code(cells.LSTMCell(8)) == recurrence.LSTM
  assert recurrence.cell_code(PeepholeLSTM(8)) is None
  assert recurrence.cell_code(cells.GRUCell(8, reset_after=False)) is None
  relu = cells.ElmanCell(8, activation="relu")
  assert recurrence.cell_code(relu) == native.CELL_CODES[("rnn", "relu")]
