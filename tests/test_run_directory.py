"""The run directory: the short command's default workdir, and resuming
only the same experiment."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rnnlab import cli
from rnnlab import train
from rnnlab.errors import UserError
from tests.helpers import ROOT, tiny_lm_config


def test_default_workdir_names_config_arg_and_overrides():
  stem = cli.default_workdir("configs/gru_shakespeare.py", {})
  assert stem == os.path.join("runs", "gru_shakespeare")
  arg = cli.default_workdir("configs/gru_shakespeare.py:runlocal", {})
  assert arg == os.path.join("runs", "gru_shakespeare_runlocal")
  steps = cli.default_workdir("configs/gru_shakespeare.py:runlocal",
                              {"train.steps": 5})
  assert steps.startswith(arg + "_") and len(steps) == len(arg) + 9
  # The same command maps to the same run; other overrides to another.
  assert steps == cli.default_workdir("configs/gru_shakespeare.py:runlocal",
                                      {"train.steps": 5})
  assert steps != cli.default_workdir("configs/gru_shakespeare.py:runlocal",
                                      {"train.steps": 6})
  # An arg with unsafe characters is made safe, and hashed so that two args
  # that differ only there stay apart.
  odd = cli.default_workdir("x/gru_lm.py:cell=lstm,lag=../1 $x", {})
  name = os.path.basename(odd)
  assert name.startswith("gru_lm_cell-lstm-lag-..-1-x_")
  assert os.path.dirname(odd) == "runs" and "/" not in name
  assert odd != cli.default_workdir("x/gru_lm.py:cell=lstm,lag=../1_$x", {})


def test_short_command_without_workdir_trains_and_resumes(tmp_path,
                                                         corpus_path):
  del corpus_path
  command = [sys.executable, "-m", "rnnlab.main",
             f"--config={ROOT / 'configs/gru_shakespeare.py'}:runlocal",
             "--config.train.steps=4", "--config.train.eval_every=2",
             "--config.train.sample_every=0",
             "--config.train.progress_bar=False"]
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  runs = []
  for _ in range(2):
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs.append(proc)
  workdir = tmp_path / cli.default_workdir(
      "configs/gru_shakespeare.py:runlocal",
      {"train.steps": 4, "train.eval_every": 2, "train.sample_every": 0,
       "train.progress_bar": False})
  assert f"workdir: {workdir.relative_to(tmp_path)}" in runs[0].stderr
  assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
      workdir.name]
  assert json.loads((workdir / "status.json").read_text())["step"] == 4
  assert "Resumed from" in runs[1].stderr  # the rerun continued the run
  assert json.loads(runs[1].stdout[runs[1].stdout.index("{"):])["step"] == 4


def test_resuming_with_a_different_config_is_refused(tmp_path, corpus_path):
  del corpus_path
  config = tiny_lm_config(train__steps=2, train__checkpoint_every=2,
                          train__eval_every=2)
  train.train_and_evaluate(config, tmp_path)
  saved = (tmp_path / "config.json").read_text()
  other = tiny_lm_config(train__steps=2, train__checkpoint_every=2,
                         train__eval_every=2, model__hidden_size=48,
                         optim__learning_rate=0.1)
  with pytest.raises(UserError, match=(
      r"holds a run with a different config: model\.hidden_size: 32 -> 48; "
      r"optim\.learning_rate: 0\.01 -> 0\.1\. Resume it with its own "
      r"config")):
    train.train_and_evaluate(other, tmp_path)
  assert (tmp_path / "config.json").read_text() == saved  # not overwritten
  # Keys that may change on resume: a longer run, other reporting.
  longer = tiny_lm_config(train__steps=3, train__checkpoint_every=3,
                          train__eval_every=3, train__log_every=1)
  assert train.train_and_evaluate(longer, tmp_path)["step"] == 3
  assert json.loads((tmp_path / "config.json").read_text())["train"][
      "steps"] == 3
