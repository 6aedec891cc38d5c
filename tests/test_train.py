"""End-to-end training on the real corpus: loss goes down, resume is exact."""
from __future__ import annotations

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from rnnlab import checkpoint
from rnnlab import sampling
from rnnlab import train
from rnnlab.data import text
from tests.helpers import tiny_lm_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corpus_path):
  """One tiny GRU run shared by the tests that inspect its workdir."""
  del corpus_path  # resolved through RNNLAB_DATA_DIR / cache, like a user
  workdir = tmp_path_factory.mktemp("gru")
  config = tiny_lm_config("gru", train__sample_every=15)
  results = train.train_and_evaluate(config, workdir)
  return config, workdir, results


def test_tiny_run_lowers_loss_on_real_corpus(trained):
  _, workdir, results = trained
  records = [json.loads(l) for l in (workdir / "metrics.jsonl").open()]
  train_losses = [r["loss"] for r in records if r["split"] == "train"]
  assert train_losses[-1] < train_losses[0] - 0.3
  val = results["eval"]["val"]
  # A uniform guess over 65 characters costs ln 65 = 4.17 nats.
  assert val["loss"] < np.log(65) - 0.8
  assert val["bits_per_char"] == pytest.approx(val["loss"] / np.log(2))
  assert val["chars"] == 111_540 - 1  # every validation target, once


def test_workdir_holds_run_records(trained):
  config, workdir, results = trained
  for name in ("config.json", "provenance.json", "status.json", "vocab.json",
               "metrics.jsonl", "samples.txt", "curves.png"):
    assert (workdir / name).is_file(), name
  assert list(workdir.glob("events.out.tfevents.*"))
  saved = json.loads((workdir / "config.json").read_text())
  assert saved["model"]["cell"] == "gru"
  assert saved["train"]["steps"] == config.train.steps
  prov = json.loads((workdir / "provenance.json").read_text())
  assert {"git_commit", "git_dirty", "packages", "devices"} <= set(prov)
  assert prov["packages"]["jax"] == jax.__version__
  status = json.loads((workdir / "status.json").read_text())
  assert status["status"] == "done" and status["step"] == config.train.steps
  assert len(text.Vocab.load(workdir / "vocab.json")) == 65
  assert "=== step 15 ===" in (workdir / "samples.txt").read_text()
  ckpt = checkpoint.Checkpointer(workdir / "checkpoints", read_only=True)
  assert ckpt.latest_step() == config.train.steps
  records = [json.loads(l) for l in (workdir / "metrics.jsonl").open()]
  assert {"train", "val", "compile"} <= {r["split"] for r in records}
  # Every record says when it was written, from the process's start (for
  # curves against wall time); the first step's is the time to it, its
  # compilation and what came before it included.
  walls = [r["wall_seconds"] for r in records]
  assert walls == sorted(walls)
  first = next(r for r in records if r["split"] == "compile")
  assert first["step"] == 1 and first["wall_seconds"] > first["seconds"] > 0


def test_process_age_counts_from_the_process_start():
  code = ("import time; time.sleep(1.5); from rnnlab import metrics; "
          "print(metrics.process_age())")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True, timeout=120).stdout
  assert 1.5 <= float(out) < 60


def test_evaluate_checkpoint_without_training(trained):
  config, workdir, results = trained
  evaluated = train.evaluate_checkpoint(None, workdir)
  assert evaluated["step"] == config.train.steps
  assert evaluated["eval"]["val"]["loss"] == pytest.approx(
      results["eval"]["val"]["loss"], rel=1e-6)


def test_resume_matches_uninterrupted_run(tmp_path, corpus_path):
  del corpus_path
  # Dropout on, so the per-step RNG must also resume correctly.
  # The weight average too: its state must resume with the rest.
  overrides = dict(model__dropout_rate=0.2, train__checkpoint_every=7,
                   train__eval_every=1000, optim__ema_decay=0.9)
  stopped = tmp_path / "stopped"
  train.train_and_evaluate(tiny_lm_config(train__steps=14, **overrides),
                           stopped)
  resumed = train.train_and_evaluate(
      tiny_lm_config(train__steps=24, **overrides), stopped)
  straight = tmp_path / "straight"
  straight_results = train.train_and_evaluate(
      tiny_lm_config(train__steps=24, **overrides), straight)
  assert resumed["step"] == 24
  assert resumed["eval"]["val"]["loss"] == straight_results["eval"]["val"]["loss"]
  template = sampling.load_run_for_inference(straight).params
  a = checkpoint.Checkpointer(stopped / "checkpoints", read_only=True)
  b = checkpoint.Checkpointer(straight / "checkpoints", read_only=True)
  _, params_a = a.restore_params(template, 24)
  _, params_b = b.restore_params(template, 24)
  jax.tree.map(np.testing.assert_array_equal, params_a, params_b)
  # The metrics log continues rather than restarting from step 0.
  steps = [json.loads(l)["step"] for l in (stopped / "metrics.jsonl").open()
           if json.loads(l)["split"] == "train"]
  assert steps == sorted(steps) and steps[-1] == 24


def test_max_seconds_ends_cleanly_and_a_rerun_resumes(tmp_path, corpus_path):
  del corpus_path
  # A limit already spent after the first step: the run evaluates and saves
  # there, says so, and a rerun without the limit continues to the end.
  workdir = tmp_path / "run"
  short = train.train_and_evaluate(
      tiny_lm_config(train__steps=12, train__eval_every=1000,
                     train__checkpoint_every=1000, train__max_seconds=1e-9),
      workdir)
  assert short["step"] == 1 and short["time_limited"]
  assert np.isfinite(short["eval"]["val"]["loss"])
  status = json.loads((workdir / "status.json").read_text())
  assert status["status"] == "done" and status["time_limited"]
  records = [json.loads(l) for l in (workdir / "metrics.jsonl").open()]
  assert [r["step"] for r in records if r["split"] == "val"] == [1]
  assert checkpoint.Checkpointer(workdir / "checkpoints",
                                 read_only=True).latest_step() == 1
  full = train.train_and_evaluate(
      tiny_lm_config(train__steps=12, train__eval_every=1000,
                     train__checkpoint_every=1000), workdir)
  assert full["step"] == 12 and not full["time_limited"]


def test_a_weight_averaged_run_evaluates_and_keeps_the_average(tmp_path,
                                                              corpus_path):
  del corpus_path
  workdir = tmp_path / "run"
  results = train.train_and_evaluate(tiny_lm_config(
      optim__ema_decay=0.9), workdir)
  run = sampling.load_run_for_inference(workdir)
  latest = checkpoint.Checkpointer(workdir / "checkpoints", read_only=True)
  _, trained = latest.restore_params(run.params, 30)
  # Inference reads the average, which differs from the trained weights.
  averaged = run.params
  gap = max(float(np.abs(a - t).max()) for a, t in zip(
      jax.tree.leaves(averaged), jax.tree.leaves(trained)))
  assert gap > 1e-3
  # ... and evaluates as the trainer did.
  evaluated = train.evaluate_checkpoint(None, workdir)
  assert evaluated["eval"]["val"]["loss"] == pytest.approx(
      results["eval"]["val"]["loss"], rel=1e-6)
  # best/ (the one evaluation, step 30) holds the weights as evaluated.
  step, best_params = checkpoint.Checkpointer(
      workdir / "best", read_only=True).restore_params(run.params)
  assert step == 30
  jax.tree.map(np.testing.assert_array_equal, best_params, averaged)


def test_unknown_names_fail_before_training(tmp_path):
  for key, value, message in [
      ("model__cell", "gur", r"Unknown cell .*'gur'.*'gru', 'lstm', 'rnn'"),
      ("optim__name", "adamm", r"Unknown optimizer .*'adamm'.*'adam'"),
      ("optim__schedule", "cosin", r"Unknown schedule .*'cosin'.*'constant'"),
      ("task", "lm", r"Unknown task .*'lm'.*'char_lm'"),
      ("train__batch_size", 0, r"train.batch_size=0 must be > 0"),
      ("train__seq_len", 2_000_000, r"seq_len=2000000 is longer than"),
  ]:
    with pytest.raises(ValueError, match=message):
      train.train_and_evaluate(tiny_lm_config(**{key: value}),
                               tmp_path / key)


def test_any_utf8_text_file_works(tmp_path):
  corpus = tmp_path / "tiny.txt"
  corpus.write_text("ab\u00e7" * 2000, encoding="utf-8")
  config = tiny_lm_config("lstm", text__path=str(corpus), train__steps=40,
                          train__eval_every=40)
  results = train.train_and_evaluate(config, tmp_path / "run")
  vocab = text.Vocab.load(tmp_path / "run" / "vocab.json")
  assert vocab.chars == ["a", "b", "\u00e7"]
  # A periodic sequence is almost perfectly predictable.
  assert results["eval"]["val"]["loss"] < 0.3
