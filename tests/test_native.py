"""The native kernels: the C sampler (the same model, the same draws as the
jax scan), their build (variants, flags, cache) and the checks at their
entry points. The training loops' numerics are in
tests/models/test_cells.py; "auto"'s choice in tests/test_autotune.py.

Kernel tests run for every instruction-set variant this CPU executes (a
variant it cannot execute is not collected).
"""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import sampling
from rnnlab.errors import UserError
from rnnlab.models import cells
from rnnlab.models import implementations
from rnnlab.models import layers
from rnnlab.native import build
from rnnlab.native import recurrence
from rnnlab.native import sampler as native_sampler
from tests.helpers import LM_VOCAB_SIZE as VOCAB
from tests.helpers import ROOT
from tests.helpers import assert_close
from tests.helpers import make_lm
from tests.helpers import native_and_scan

ISAS = build.supported_isas()

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


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", sorted(CASES))
# Batch 13 takes the tiled path (generate.c: BATCH_MIN = 4 or more rows): two
# whole row tiles and a remainder.
@pytest.mark.parametrize("batch,threads", [(1, 2), (3, 3), (13, 2)])
def test_native_logits_match_the_model_and_draws_follow_the_rule(
    case, batch, threads, isa):
  cell, options = CASES[case]
  lm, params = make_lm(cell, **options)
  rng = np.random.default_rng(batch)
  prime = jnp.asarray(rng.integers(0, VOCAB, (batch, 5)), jnp.int32)
  key, length, temperature = jax.random.key(11), 40, 0.9
  sampler = sampling.Sampler(lm, params, "native", threads=threads, isa=isa)
  assert native_sampler.available(isa) is None  # CI has a compiler
  tokens, logits = sampler.generate(prime, key, length=length,
                                    temperature=temperature)
  assert tokens.shape == (batch, length) and tokens.dtype == np.int32
  # The model itself, teacher-forced on prime + the drawn tokens, gives the
  # logits every token was drawn from.
  full, _ = lm.apply({"params": params},
                     jnp.concatenate([prime, jnp.asarray(tokens)], axis=1))
  assert_close(logits, full[:, 4:-1])
  # Each token is argmax(logits / T + Gumbel noise of its step's seed).
  seeds = sampling.step_seeds(key, length)
  for i in range(length):
    noise = sampling.gumbel_noise(seeds[i], (batch, VOCAB))
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
      drawn[backend] = sampling.Sampler(lm, params, backend).generate(
          prime, jax.random.key(3), length=80, temperature=temperature,
          top_k=top_k)
    np.testing.assert_array_equal(drawn["native"][0], drawn["jax"][0])
    # 80 steps of a saturated recurrence in two summation orders: float32
    # rounding grows along the sequence (1.2e-5 seen on an AMD EPYC).
    assert_close(drawn["native"][1], drawn["jax"][1], tol=5e-5)


def test_top_k_limits_the_native_draws():
  lm, params = make_lm("gru")
  tokens, logits = sampling.Sampler(lm, params, "native").generate(
      jnp.asarray([[0]], jnp.int32), jax.random.key(1), length=80,
      temperature=5.0, top_k=2)
  top2 = np.argsort(-logits[0], axis=-1)[:, :2]
  assert all(t in top2[i] for i, t in enumerate(tokens[0]))
  assert len(set(tokens[0].tolist())) > 2  # hot: not one token throughout


def test_thread_counts_agree():
  lm, params = make_lm("gru", hidden_sizes=(64, 48))
  sampler = {t: sampling.Sampler(lm, params, "native", threads=t)
             for t in (1, 2, 4)}
  out = {t: s.generate(jnp.asarray([[5]], jnp.int32), jax.random.key(0),
                       length=60, temperature=0.7)
         for t, s in sampler.items()}
  for t in (2, 4):
    np.testing.assert_array_equal(out[t][0], out[1][0])
    assert_close(out[t][1], out[1][1])


def test_auto_rule_picks_native_for_batch_one_and_jax_for_wide_batches():
  """The fixed rule (RNNLAB_AUTOTUNE=0, set for the tests)."""
  lm, params = make_lm("gru")
  sampler = sampling.Sampler(lm, params, "auto")
  assert sampler.backend_for(1) == "native"
  assert sampler.backend_for(sampling.NATIVE_MAX_BATCH + 1) == "jax"
  assert sampler.choices[1].source == "rule"
  assert sampling.Sampler(lm, params, "jax").backend_for(1) == "jax"


@pytest.mark.parametrize("options,reason", [
    ({"name": "attention_lm"}, "AttentionLM"),
    ({"layer_norm": True}, "layer-norm"),
    ({"reset_after": False}, "reset-before GRU"),
    ({"dtype": "bfloat16"}, "bfloat16"),
])
def test_models_outside_the_kernel_fall_back_or_fail_clearly(options, reason):
  lm, params = make_lm("gru", **options)
  assert reason in native_sampler.unsupported(lm)
  assert sampling.Sampler(lm, params, "auto").backend_for(1) == "jax"
  with pytest.raises(UserError, match=f"backend=native.*{reason}"):
    sampling.Sampler(lm, params, "native")


def test_unknown_backend_and_variant_name_the_choices():
  lm, params = make_lm("gru")
  with pytest.raises(UserError, match=r"'cuda'.*'auto', 'jax', 'native'"):
    sampling.Sampler(lm, params, "cuda")
  with pytest.raises(UserError,
                     match=r"'sse9'.*'avx512', 'avx2', 'generic'"):
    sampling.Sampler(lm, params, "native", isa="sse9")


def test_native_off_switch(monkeypatch):
  """RNNLAB_NATIVE=0: no native kernel anywhere; "auto" runs XLA."""
  monkeypatch.setenv("RNNLAB_NATIVE", "0")
  lm, params = make_lm("gru")
  assert "RNNLAB_NATIVE=0" in native_sampler.available()
  assert sampling.Sampler(lm, params, "auto").backend_for(1) == "jax"
  assert "RNNLAB_NATIVE=0" in recurrence.unavailable()
  native_ys, scan_ys = native_and_scan(
      "gru", 8, (2, 5, 3), lambda layer, v, xs: jax.jit(layer.apply).lower(
          v, xs).as_text())
  assert "rnnlab_recurrence" not in native_ys  # the XLA fallback ran


# --- Build: compiler failures, variants, flags, the cache ------------------

@pytest.fixture
def fresh_cache(monkeypatch, tmp_path):
  """An empty private cache; the loaded-library caches forgotten around
  the test (it changes the compiler)."""
  cache = tmp_path / "cache"
  monkeypatch.setenv("RNNLAB_NATIVE_CACHE", str(cache))
  native_sampler.clear_caches()
  recurrence.clear_caches()
  yield cache
  native_sampler.clear_caches()
  recurrence.clear_caches()


def test_without_a_compiler_auto_falls_back_and_native_explains(
    monkeypatch, fresh_cache):
  monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
  reason = native_sampler.available()
  assert reason and "false" in reason and "failed" in reason
  lm, params = make_lm("gru")
  assert sampling.Sampler(lm, params, "auto").backend_for(1) == "jax"
  with pytest.raises(UserError, match="failed"):
    sampling.Sampler(lm, params, "native")
  assert not list(fresh_cache.glob("generate-*"))  # nothing half-built left


def test_the_library_is_built_once_and_reused(fresh_cache):
  native_sampler.library()
  built = list(fresh_cache.glob("generate-*.so"))
  assert len(built) == 1
  mtime = built[0].stat().st_mtime_ns
  native_sampler.clear_caches()
  native_sampler.library()
  assert built[0].stat().st_mtime_ns == mtime


def test_training_without_a_compiler_falls_back_to_the_xla_kernels(
    monkeypatch, fresh_cache):
  del fresh_cache
  monkeypatch.setenv("CXX", "false")
  assert "failed" in recurrence.unavailable()
  native_ys, scan_ys = native_and_scan(
      "lstm", 8, (2, 5, 3), lambda layer, v, xs: layer.apply(v, xs)[1])
  assert_close(native_ys, scan_ys)


def test_cache_open_to_others_is_not_used(monkeypatch, tmp_path, caplog):
  """A cache others can write (or that another user owns) could hand this
  process their code: build into a private directory instead, and warn."""
  shared = tmp_path / "shared"
  shared.mkdir()
  shared.chmod(0o777)
  monkeypatch.setenv("RNNLAB_NATIVE_CACHE", str(shared))
  used = build.cache_dir()
  assert used != shared and build._is_private(used)
  assert "not a directory owned by this user" in caplog.text
  if os.getuid() == 0:  # root can give a directory to another user
    other = tmp_path / "other"
    other.mkdir(mode=0o755)
    os.chown(other, 12345, -1)
    monkeypatch.setenv("RNNLAB_NATIVE_CACHE", str(other))
    assert build.cache_dir() != other
  private = tmp_path / "private"
  monkeypatch.setenv("RNNLAB_NATIVE_CACHE", str(private))
  assert build.cache_dir() == private  # created 0700
  assert stat.S_IMODE(private.stat().st_mode) == 0o700


def test_cache_key_covers_compiler_version_jaxlib_and_variant(monkeypatch):
  def key(**changes):
    for name, value in changes.items():
      monkeypatch.setattr(build, name, value)
    return build.library_path(recurrence.SOURCE, "generic", cxx=True).name

  base = key()
  assert key(compiler_version=lambda compiler: "g++ 99.0") != base
  assert key(_jaxlib_version=lambda: "0.0.1") != base
  assert build.library_path(recurrence.SOURCE, "avx2", cxx=True).name != (
      build.library_path(recurrence.SOURCE, "generic", cxx=True).name)


def _fake_compiler(tmp_path, log, output=b"not a shared library"):
  """A "compiler" that writes `output` to its -o target, and logs calls."""
  script = tmp_path / "fake-cc"
  script.write_text(textwrap.dedent(f"""\
      #!{sys.executable}
      import sys
      if "--version" in sys.argv:
          print("fake-cc 1.0"); sys.exit(0)
      open({str(log)!r}, "a").write("build\\n")
      out = sys.argv[sys.argv.index("-o") + 1]
      open(out, "wb").write({output!r})
      """))
  script.chmod(0o755)
  return str(script)


def test_a_cached_library_that_does_not_load_is_rebuilt_once(
    monkeypatch, fresh_cache, tmp_path):
  # A truncated file where the library should be: rebuilt, then loaded.
  isa = build.default_isa()
  path = build.library_path(native_sampler.SOURCE, isa, cxx=False)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(b"\x7fELF truncated")
  native_sampler.library()
  assert path.stat().st_size > 1000
  # A compiler whose output never loads: one rebuild, then XLA's kernels
  # with a warning.
  log = tmp_path / "calls.log"
  monkeypatch.setenv("CXX", _fake_compiler(tmp_path, log))
  reason = recurrence.unavailable()
  assert "does not load after a rebuild" in reason
  assert log.read_text().count("build") == 2
  native_ys, scan_ys = native_and_scan(
      "gru", 8, (2, 5, 3), lambda layer, v, xs: layer.apply(v, xs)[1])
  assert_close(native_ys, scan_ys)


@pytest.mark.parametrize("isa", ISAS)
def test_every_variant_builds_without_warnings(isa, tmp_path):
  """-Wall -Wextra -Werror, both sources, XLA's headers as system ones."""
  for source, cxx, extra in (
      (native_sampler.SOURCE, False, ()),
      (recurrence.SOURCE, True, recurrence.CXX_FLAGS)):
    cmd = build.compile_command(source, isa, tmp_path / f"{source.stem}.so",
                                cxx=cxx, extra_flags=extra + ("-Werror",))
    assert "-ffast-math" not in cmd and "-w" not in cmd
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                         check=False)
    assert out.returncode == 0, out.stderr[-3000:]


FTZ_SCRIPT = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp, numpy as np
    from rnnlab.native import recurrence
    from rnnlab.native import sampler
    isa = sys.argv[1]

    def denormals_kept(where):
      # Flush-to-zero (as -ffast-math's crtfastmath sets it on loading)
      # would make this 0 in this thread.
      assert np.float32(1e-40) * np.float32(1) != 0, where

    denormals_kept("start")
    lib = sampler.library(isa)
    denormals_kept("sampler loaded")
    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.normal(size=s).astype(np.float32)
    w = sampler.Weights(
        cells=np.array([3], np.int32), hidden=np.array([16], np.int32),
        w_x=[f32(5, 48)], b_x=[f32(48)], w_h=[f32(16, 48)], b_hn=[f32(16)],
        w_out=f32(16, 5), b_out=f32(5))
    sampler.generate(w, [f32(1, 16)], f32(1, 5), f32(4, 1, 5),
                     temperature=1.0, top_k=0, isa=isa)
    denormals_kept("sampler called")
    recurrence.register(isa)
    denormals_kept("recurrence loaded")
    weights = {"w_x": f32(3, 48), "b": f32(48), "w_h": f32(16, 48),
               "extras": {"hidden_candidate_bias": f32(16)}}
    jax.block_until_ready(recurrence.native_scan(
        recurrence.GRU, False, isa, weights, f32(2, 16), f32(2, 4, 3)))
    denormals_kept("recurrence called")
    print("ok")
    """)


@pytest.mark.parametrize("isa", ISAS)
def test_loading_and_calling_the_kernels_keeps_denormals(isa):
  """No -ffast-math: with GCC it links crtfastmath, which sets
  flush-to-zero in the loading thread (in a fresh process, so that no
  earlier load hides it)."""
  out = subprocess.run([sys.executable, "-c", FTZ_SCRIPT, isa], cwd=ROOT,
                       capture_output=True, text=True, timeout=300,
                       check=False)
  assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]


def test_kernels_keep_ieee_special_values():
  """NaN and Inf keep their meaning (the divergence check relies on them):
  a NaN input gives NaN outputs, +-Inf saturate the gates."""
  isa = build.default_isa()
  weights = {"w_x": jnp.ones((3, 48)), "b": jnp.zeros(48),
             "w_h": jnp.zeros((16, 48)),
             "extras": {"hidden_candidate_bias": jnp.zeros(16)}}
  xs = jnp.asarray([[[np.nan, 0, 0]], [[np.inf, 0, 0]], [[-np.inf, 0, 0]]],
                   jnp.float32)
  _, ys = recurrence.native_scan(recurrence.GRU, False, isa, weights,
                                 jnp.zeros((3, 16)), xs)
  ys = np.asarray(ys)[:, 0]
  assert np.isnan(ys[0]).all()
  # r = z = sigmoid(inf) = 1, n = tanh(inf) = 1: h = (1 - 1) * 0 + 1 * 1.
  np.testing.assert_array_equal(ys[1], 1.0)
  np.testing.assert_array_equal(ys[2], 0.0)  # z = 0 keeps h0 = 0


# --- Entry-point checks: bad shapes and dtypes never reach the kernels ----

def _gru_inputs(batch=4, hidden=16, features=3, steps=5):
  rng = np.random.default_rng(0)
  f32 = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)
  weights = {"w_x": f32(features, 3 * hidden), "b": f32(3 * hidden),
             "w_h": f32(hidden, 3 * hidden),
             "extras": {"hidden_candidate_bias": f32(hidden)}}
  return weights, f32(batch, hidden), f32(batch, steps, features)


@pytest.mark.parametrize("isa", ISAS)
def test_native_scan_refuses_mismatched_inputs(isa):
  weights, carry, xs = _gru_inputs()
  scan = lambda w, c, x: recurrence.native_scan(recurrence.GRU, False, isa,
                                                w, c, x)
  with pytest.raises(UserError, match=r"carry has shape \(1, 16\), "
                     r"expected \(4, 16\)"):
    scan(weights, carry[:1], xs)
  with pytest.raises(UserError, match=r"xs is float16.*float32 only"):
    scan(weights, carry, xs.astype(jnp.float16))
  bad = dict(weights, w_h=weights["w_h"][:, :40])
  with pytest.raises(UserError, match=r"w_h has shape \(16, 40\), expected "
                     r"\(16, 48\)"):
    scan(bad, carry, xs)
  lstm = {"w_x": jnp.zeros((3, 64)), "b": jnp.zeros(64),
          "w_h": jnp.zeros((16, 64)), "extras": {}}
  with pytest.raises(UserError, match=r"\(c, h\) pair"):
    recurrence.native_scan(recurrence.LSTM, False, isa, lstm, carry, xs)


@pytest.mark.parametrize("isa", ISAS)
def test_the_ffi_entries_check_shapes_before_touching_memory(isa):
  """Past the Python checks (a direct custom call), the C++ entries refuse
  buffers that do not fit together, and sizes that overflow an int."""
  recurrence.register(isa)
  weights, carry, xs = _gru_inputs()
  xp = jnp.zeros((4, 5, 48))
  out = jax.ShapeDtypeStruct

  def forward(xp, h0, w_h=weights["w_h"], b_hn=jnp.zeros(16)):
    batch, steps = xp.shape[:2]
    return jax.ffi.ffi_call(
        f"rnnlab_recurrence_fwd_{isa}",
        (out((batch, steps, 16), jnp.float32),) * 2 +
        (out((batch, steps, 48), jnp.float32),))(
            xp, weights["b"], w_h, h0, jnp.zeros_like(h0), b_hn,
            cell=np.int32(recurrence.GRU), reverse=np.int32(0),
            threads=np.int32(2))

  jax.block_until_ready(forward(xp, carry))  # fits: runs
  with pytest.raises(Exception, match=r"h0 has shape \[1, 16\], expected "
                     r"\[4, 16\]"):
    jax.block_until_ready(forward(xp, carry[:1]))
  with pytest.raises(Exception, match=r"b_hn has shape \[8\]"):
    jax.block_until_ready(forward(xp, carry, b_hn=jnp.zeros(8)))
  with pytest.raises(Exception, match=r"dtype"):
    jax.block_until_ready(forward(xp.astype(jnp.bfloat16), carry))


def test_sizes_that_overflow_an_int_are_refused():
  """[65536, 4096, 3 * 16] is 2^31 * 1.5 elements: the kernels' int offsets
  would wrap. Refused while tracing (shapes only, nothing allocated)."""
  weights, carry, _ = _gru_inputs(batch=1 << 16)
  huge = jax.ShapeDtypeStruct((1 << 16, 1 << 12, 3), jnp.float32)
  with pytest.raises(UserError, match=r"overflow a 32-bit int"):
    jax.eval_shape(lambda x: recurrence.native_scan(
        recurrence.GRU, False, build.default_isa(), weights, carry, x), huge)


def test_the_layer_refuses_a_carry_that_does_not_fit():
  cell = cells.create_cell("gru", 16, {})
  xs = jnp.zeros((4, 5, 3))
  for implementation in ["native", "fused", "scan"]:
    layer = layers.Recurrent(cell, implementation=implementation)
    variables = layer.init(jax.random.key(0), xs)
    with pytest.raises(UserError, match=r"carry has shape \(1, 16\).*batch "
                       r"of 4 needs \(4, 16\)"):
      layer.apply(variables, xs, jnp.zeros((1, 16)))


@pytest.mark.parametrize("isa", ISAS)
def test_the_sampler_entry_refuses_mismatched_inputs(isa):
  lm, params = make_lm("lstm")
  table = lm.apply({"params": params}, method="input_table")
  weights = native_sampler.Weights.from_model(lm, params, table)
  carries = tuple((np.zeros((2, 32), np.float32),) * 2 for _ in range(2))
  logits0 = np.zeros((2, VOCAB), np.float32)
  gumbel = np.zeros((6, 2, VOCAB), np.float32)
  generate = lambda **kw: native_sampler.generate(
      weights, kw.get("carries", carries), kw.get("logits0", logits0),
      kw.get("gumbel", gumbel), temperature=1.0, top_k=0, isa=isa)
  tokens, _ = generate()
  assert tokens.shape == (2, 6)
  short = ((np.zeros((1, 32), np.float32),) * 2, carries[1])
  with pytest.raises(ValueError, match=r"layer 0's carry has shape \(1, 32\)"
                     r", expected \(2, 32\)"):
    generate(carries=short)
  with pytest.raises(ValueError, match=r"logits0 is float64, expected "
                     r"float32"):
    generate(logits0=logits0.astype(np.float64))
  with pytest.raises(ValueError, match=r"Weights.w_h\[1\] has shape "
                     r"\(32, 64\), expected \(32, 128\)"):
    native_sampler.Weights(
        cells=weights.cells, hidden=weights.hidden, w_x=weights.w_x,
        b_x=weights.b_x, w_h=[weights.w_h[0], weights.w_h[1][:, :64]],
        b_hn=weights.b_hn, w_out=weights.w_out, b_out=weights.b_out)


def test_kernels_run_on_the_threads_openmp_allows(tmp_path):
  """OMP_THREAD_LIMIT=1 (a shared node's policy): the training loops split
  over the one thread they get, and batch-1 sampling still works."""
  script = textwrap.dedent("""
      import jax, jax.numpy as jnp
      from rnnlab import sampling
      from tests.helpers import assert_close, make_lm, native_and_scan
      from tests.helpers import use_suite_settings
      use_suite_settings()  # the tests' compilation cache and XLA options
      grads = native_and_scan("gru", 40, (3, 6, 5), lambda layer, v, xs:
          jax.grad(lambda v: jnp.sum(layer.apply(v, xs)[1] ** 2))(v))
      jax.tree.map(assert_close, *grads)
      lm, params = make_lm("gru", hidden_size=128)  # 2 threads' worth
      tokens, _ = sampling.Sampler(lm, params, "native").generate(
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

  code = implementations.native_cell_code
  assert code(cells.LSTMCell(8)) == recurrence.LSTM
  assert code(PeepholeLSTM(8)) is None
  assert code(cells.GRUCell(8, reset_after=False)) is None
  relu = cells.ElmanCell(8, activation="relu")
  assert code(relu) == recurrence.CELL_CODES[("rnn", "relu")]


def test_the_variants_this_cpu_runs():
  assert ISAS[-1] == "generic"
  assert build.default_isa() == ISAS[0]
  flags = build._cpu_flags()  # pylint: disable=protected-access
  if build._is_x86() and {"avx2", "fma"} <= flags:  # pylint: disable=protected-access
    assert "avx2" in ISAS
  with pytest.raises(UserError, match=r"'sse9'.*Valid choices"):
    build.check_isa("sse9")
  unsupported = [isa for isa in build.ISAS if isa not in ISAS]
  for isa in unsupported:
    with pytest.raises(UserError, match="cannot execute"):
      build.check_isa(isa)
