"""implementation="auto" and the sampler's "auto": timed once per machine
and shape, cached, kept by a resumed run, decided by process 0.

The rest of the suite runs "auto" by its fixed rule (RNNLAB_AUTOTUNE=0,
tests/helpers.py use_suite_settings); these tests turn timing on.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from rnnlab import implementation_choice
from rnnlab import sampling
from rnnlab import train
from rnnlab.native import __main__ as native_cli
from rnnlab.native import autotune
from rnnlab.native import build
from rnnlab.native import recurrence
from rnnlab.native import sampler as native_sampler
from tests.helpers import ROOT, make_lm, tiny_lm_config


@pytest.fixture
def timing(monkeypatch, tmp_path):
  """Timing on, with a private cache holding this machine's built
  libraries (so nothing compiles again) and no choices."""
  monkeypatch.delenv("RNNLAB_AUTOTUNE", raising=False)
  cache = tmp_path / "native-cache"
  cache.mkdir(mode=0o700)
  for library in build.cache_dir().glob("*.so"):
    shutil.copy2(library, cache / library.name)
  monkeypatch.setenv("RNNLAB_NATIVE_CACHE", str(cache))
  return cache


def test_the_simpler_candidate_wins_unless_beaten_by_the_margin():
  simplest_first = ["fused", "scan", "native_avx2"]
  assert autotune.pick({"fused": 1.0, "scan": 0.97, "native_avx2": 0.96},
                       simplest_first) == "fused"  # within 5%: simplest
  assert autotune.pick({"fused": 1.0, "scan": 0.90, "native_avx2": 0.89},
                       simplest_first) == "scan"
  assert autotune.pick({"fused": 1.0, "scan": 1.2, "native_avx2": 0.5},
                       simplest_first) == "native_avx2"
  assert autotune.pick({"scan": 1.0, "native_avx2": 0.5},
                       simplest_first) == "native_avx2"  # fused not timed


def _fake_runners(seconds, calls):
  """Runners that take `seconds[name]` per step (in a fake clock) and
  count their calls."""
  def runner(name):
    def run(n):
      calls.append(name)
      clock[0] += seconds[name] * n
    return run
  clock = [0.0]
  return {name: runner(name) for name in seconds}, clock


def test_choose_times_once_then_reuses_the_cache(timing, monkeypatch):
  del timing
  seconds, calls = {"fused": 2.0, "scan": 1.0}, []
  runners, clock = _fake_runners(seconds, calls)
  monkeypatch.setattr(autotune.time, "perf_counter", lambda: clock[0])
  made = []
  make = lambda: made.append(1) or runners
  first = autotune.choose("train", {"shape": [8, 4]}, make, ["fused", "scan"])
  assert (first.choice, first.source) == ("scan", "timed")
  assert first.seconds == pytest.approx({"fused": 2.0, "scan": 1.0})
  # Warm-up and probe, then REPEATS interleaved timed runs of each.
  assert calls.count("fused") == calls.count("scan") == 2 + autotune.REPEATS
  again = autotune.choose("train", {"shape": [8, 4]}, make, ["fused", "scan"])
  assert (again.choice, again.source) == ("scan", "cache")
  assert len(made) == 1  # nothing built or timed the second time
  other = autotune.choose("train", {"shape": [16, 4]}, make,
                          ["fused", "scan"])
  assert other.source == "timed" and len(made) == 2  # another key


def test_a_close_call_is_timed_again(monkeypatch):
  """Within twice the margin, the pick could flip on noise: the close
  candidates (only) run another REPEATS rounds, decided on all runs."""
  seconds, calls = {"fused": 1.0, "scan": 0.93, "native_avx2": 1.5}, []
  runners, clock = _fake_runners(seconds, calls)
  monkeypatch.setattr(autotune.time, "perf_counter", lambda: clock[0])
  name, timed = autotune.timed_choice(runners, ["fused", "scan",
                                                "native_avx2"])
  assert name == "scan"  # 7% faster than fused: beyond the margin
  assert timed == pytest.approx(seconds)
  assert calls.count("fused") == calls.count("scan") == (
      2 + 2 * autotune.REPEATS)
  assert calls.count("native_avx2") == 2 + autotune.REPEATS  # clearly slower
  assert autotune.close_calls({"fused": 1.0, "scan": 0.5}, ["fused",
                                                            "scan"]) == []


def test_followers_take_process_zeros_choice(timing, monkeypatch):
  """Several processes: only process 0 reads and writes the cache; the
  others follow what it broadcasts, whatever their own cache says."""
  del timing
  fields, candidates = {"shape": [8]}, ["fused", "scan"]
  key = autotune.cache_key("train", fields)
  autotune.store(key, autotune.Choice("fused", "timed", {"fused": 1.0}),
                 "train", fields)
  sent = []
  leader = autotune.choose("train", fields, dict, candidates,
                           broadcast=lambda v: sent.append(v) or v)
  assert leader.choice == "fused"
  # A follower whose own cache says "scan" gets process 0's "fused".
  autotune.store(key, autotune.Choice("scan", "timed", {"scan": 1.0}),
                 "train", fields)
  received = iter(sent)
  follower = autotune.choose("train", fields, dict, candidates,
                             broadcast=lambda v: next(received),
                             leader=False)
  assert follower.choice == "fused"
  # With nothing cached anywhere, all time together; the follower writes
  # nothing.
  autotune.clear()
  seconds, calls = {"fused": 2.0, "scan": 1.0}, []
  runners, clock = _fake_runners(seconds, calls)
  monkeypatch.setattr(autotune.time, "perf_counter", lambda: clock[0])
  follower = autotune.choose("train", fields, lambda: runners, candidates,
                             leader=False)
  assert follower.source == "timed" and not autotune.list_choices()


def test_training_times_auto_and_a_resumed_run_keeps_its_choice(
    timing, tmp_path, corpus_path):
  del corpus_path
  workdir = tmp_path / "run"
  train.train_and_evaluate(tiny_lm_config("gru", train__steps=4), workdir)
  record = json.loads((workdir / "model.json").read_text())["implementation"]
  candidates = implementation_choice.implementation_candidates()
  assert record["requested"] == "auto" and record["source"] == "timed"
  assert record["choice"] in candidates
  assert set(record["seconds"]) <= set(candidates)
  assert len(record["seconds"]) >= 2
  # The cache now says something else; the resumed run keeps its choice
  # (bitwise resume), a new run takes the cache's without timing.
  cached = next((timing / "choices").glob("train-*.json"))
  other = next(c for c in candidates if c != record["choice"])
  cached.write_text(json.dumps({**json.loads(cached.read_text()),
                                "choice": other}))
  train.train_and_evaluate(tiny_lm_config("gru", train__steps=6), workdir)
  resumed = json.loads((workdir / "model.json").read_text())["implementation"]
  assert (resumed["choice"], resumed["source"]) == (record["choice"], "run")
  fresh = tmp_path / "fresh"
  train.train_and_evaluate(tiny_lm_config("gru", train__steps=2), fresh)
  new = json.loads((fresh / "model.json").read_text())["implementation"]
  assert (new["choice"], new["source"]) == (other, "cache")


def test_an_explicit_implementation_is_not_timed(timing, tmp_path,
                                                 corpus_path):
  del corpus_path
  train.train_and_evaluate(
      tiny_lm_config("gru", train__steps=2, model__implementation="scan"),
      tmp_path / "run")
  record = json.loads((tmp_path / "run" / "model.json").read_text())
  assert record["implementation"] == {"requested": "scan", "choice": "scan",
                                      "source": "config", "seconds": {},
                                      "key": ""}
  assert not list((timing / "choices").glob("*.json"))


def test_native_off_leaves_it_out_of_the_candidates(monkeypatch):
  assert any(c.startswith("native") for c in
             implementation_choice.implementation_candidates())
  monkeypatch.setenv("RNNLAB_NATIVE", "0")
  assert implementation_choice.implementation_candidates() == ["fused", "scan"]


def test_the_sampler_times_each_batch_size_once(timing):
  del timing
  lm, params = make_lm("gru")
  sampler = sampling.Sampler(lm, params, "auto")
  backend = sampler.backend_for(1)
  choice = sampler.choices[1]
  assert choice.source == "timed" and set(choice.seconds) == {"jax",
                                                              "native"}
  assert backend == choice.choice
  tokens, _ = sampler.generate(jnp.zeros((1, 2), jnp.int32),
                               jax.random.key(0), length=5)
  assert tokens.shape == (1, 5)
  again = sampling.Sampler(lm, params, "auto")
  assert again.backend_for(1) == backend
  assert again.choices[1].source == "cache"


@pytest.mark.parametrize("kernel", ["recurrence", "sampler"])
def test_a_changed_kernel_source_makes_cached_timings_stale(
    kernel, monkeypatch, tmp_path):
  """A timing measured with the old build of either kernel (training
  loops or sampler) must not pick for the new one."""
  fields = {"batch": 64}
  before = autotune.cache_key("sample", fields)
  module = {"recurrence": recurrence, "sampler": native_sampler}[kernel]
  edited = tmp_path / module.SOURCE.name
  edited.write_text(module.SOURCE.read_text() + "\n/* edited */\n")
  monkeypatch.setattr(module, "SOURCE", edited)
  assert autotune.cache_key("sample", fields) != before


def test_show_and_clear_list_and_forget_the_choices(timing, capsys):
  del timing
  autotune.store("train-test", autotune.Choice("fused", "timed",
                                               {"fused": 0.25,
                                                "scan": 0.3}),
                 "train", {"task": "char_lm", "model": {"cell": "gru"}})
  native_cli.show()
  out = capsys.readouterr().out
  assert "auto's choices (1)" in out and "cell=gru -> fused" in out
  assert "fused 250.0 ms, scan 300.0 ms" in out
  native_cli.clear(libraries=False)
  assert "cleared 1 cached choices" in capsys.readouterr().out
  assert not autotune.list_choices()


def test_build_command_compiles_and_times_the_named_configs(timing,
                                                            corpus_path):
  """`python -m rnnlab.native build --config=...`, as launch.sh runs it
  before training: the choice lands in the cache and is printed."""
  del corpus_path
  config = "configs/lstm_shakespeare.py:runlocal"  # 2 x 32 LSTM, 8 x 32 batches
  out = subprocess.run(
      [sys.executable, "-m", "rnnlab.native", "build", f"--config={config}"],
      cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  assert f"{config}: implementation=auto runs" in out.stdout
  assert "(timed:" in out.stdout
  assert len(list((timing / "choices").glob("train-*.json"))) == 1
