"""The command lines a user types, run as subprocesses."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

RUNLOCAL = "--config=configs/gru_shakespeare.py:runlocal"


def run(*args, env=None, timeout=240):
  env = {**os.environ, **(env or {})}
  return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, corpus_path):
  del corpus_path
  workdir = tmp_path_factory.mktemp("cli")
  proc = run("rnnlab.main", RUNLOCAL, f"--workdir={workdir}",
             "--config.train.progress_bar=False")
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads(proc.stdout[proc.stdout.index("{"):])
  assert results["step"] == 20
  return workdir


def test_eval_mode_reports_metrics_without_training(workdir):
  proc = run("rnnlab.main", "--mode=eval", f"--workdir={workdir}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads(proc.stdout[proc.stdout.index("{"):])
  assert results["step"] == 20
  assert 0 < results["eval"]["val"]["bits_per_char"] < 8
  status = json.loads((workdir / "status.json").read_text())
  assert status["step"] == 20  # eval did not train further


def test_sample_command(workdir):
  args = ("rnnlab.sample", f"--workdir={workdir}", "--prime=ROMEO:",
          "--length=80", "--temperature=0.8", "--seed=0")
  first, second = run(*args), run(*args)
  assert first.returncode == 0, first.stderr[-3000:]
  assert first.stdout.startswith("ROMEO:")
  # print() adds one newline; the sample itself may end in "\n" too.
  assert first.stdout.endswith("\n")
  assert len(first.stdout[:-1]) == len("ROMEO:") + 80
  assert first.stdout == second.stdout


def test_sample_with_unknown_prime_characters_names_them(workdir):
  proc = run("rnnlab.sample", f"--workdir={workdir}", "--prime=ROMEO{}")
  assert proc.returncode == 2
  assert "not in the vocabulary: ['{', '}']" in proc.stderr
  assert "Traceback" not in proc.stderr


def test_sample_without_checkpoint(tmp_path):
  proc = run("rnnlab.sample", f"--workdir={tmp_path}")
  assert proc.returncode == 2
  assert "No config.json" in proc.stderr and "Traceback" not in proc.stderr


def test_mistyped_config_key_is_an_error(tmp_path):
  proc = run("rnnlab.main", RUNLOCAL, f"--workdir={tmp_path}",
             "--config.train.stepz=5")
  assert proc.returncode != 0
  assert "stepz" in proc.stderr
  assert not (tmp_path / "checkpoints").exists()


def test_missing_corpus_offline_gives_how_to_not_a_hang(tmp_path):
  env = {"RNNLAB_OFFLINE": "1", "XDG_CACHE_HOME": str(tmp_path / "cache"),
         "RNNLAB_DATA_DIR": str(tmp_path / "empty")}
  proc = run("rnnlab.main", RUNLOCAL, f"--workdir={tmp_path / 'run'}",
             env=env, timeout=60)
  assert proc.returncode == 2
  assert "Cannot find the 'tinyshakespeare' corpus" in proc.stderr
  assert "--config.text.path" in proc.stderr
  assert "Traceback" not in proc.stderr


def test_launch_script_passes_arguments_through(tmp_path):
  proc = subprocess.run(
      ["bash", str(ROOT / "launch.sh"), RUNLOCAL, f"--workdir={tmp_path}",
       "--config.model.cell=lstm_x"], cwd=ROOT, capture_output=True,
      text=True, timeout=120, env={**os.environ, "PYTHON": sys.executable})
  # The override reached rnnlab.main: its validation rejected the name.
  assert proc.returncode == 2
  assert "Unknown cell 'lstm_x'" in proc.stderr


def test_seq2seq_run_writes_attention_heatmaps_and_evaluates(tmp_path):
  config = "--config=configs/gru_seq2seq_addition.py:runlocal"
  proc = run("rnnlab.main", config, f"--workdir={tmp_path}",
             "--config.train.progress_bar=False")
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads(proc.stdout[proc.stdout.index("{"):])
  assert set(results["eval"]) == {"val", "test"}
  assert 0 <= results["eval"]["test"]["accuracy"] <= 1
  plots = sorted((tmp_path / "attention").glob("test_*.png"))
  assert len(plots) == 4
  assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots)
  for p in plots:
    p.unlink()
  proc = run("rnnlab.main", "--mode=eval", f"--workdir={tmp_path}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  again = json.loads(proc.stdout[proc.stdout.index("{"):])
  results["eval"]["test"].pop("eval_seconds")
  assert again["eval"]["test"] == results["eval"]["test"]
  assert len(list((tmp_path / "attention").glob("test_*.png"))) == 4
