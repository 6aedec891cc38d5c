"""Sweeps: a 2x2 grid runs locally, a rerun skips finished trials, the
report lists every trial; failures are reported."""
from __future__ import annotations

import json
import textwrap

import pytest

from rnnlab import sweep
from rnnlab.errors import UserError

CONFIG = """
from rnnlab import base_config


def get_config(arg=""):
  c = base_config.get_config()
  c.data.path = {corpus!r}
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


def test_expand_grid_and_list():
  grid = sweep.expand({"model.cell": ["rnn", "gru"], "seed": [0, 1, 2]})
  assert len(grid) == 6 and grid[0] == {"model.cell": "rnn", "seed": 0}
  assert sweep.trial_name(grid[-1]) == "cell=gru,seed=2"
  assert sweep.expand([{"seed": 1}]) == [{"seed": 1}]
  with pytest.raises(UserError, match="list of values"):
    sweep.expand({"seed": 3})
  with pytest.raises(UserError, match="repeats a trial"):
    sweep.expand([{"seed": 1}, {"seed": 1}])


def test_two_by_two_sweep_runs_skips_done_and_reports(tmp_path, capsys):
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("to be or not to be, that is the question.\n" * 200)
  config = tmp_path / "tiny_sweep.py"
  config.write_text(textwrap.dedent(CONFIG.format(corpus=str(corpus))))
  root = tmp_path / "sweep"
  assert sweep.main([f"--config={config}", f"--root={root}",
                     "--parallel=2"]) == 0
  names = sorted(p.name for p in root.iterdir() if p.is_dir())
  assert names == ["cell=gru,learning_rate=0.003", "cell=gru,learning_rate=0.01",
                   "cell=rnn,learning_rate=0.003", "cell=rnn,learning_rate=0.01"]
  for name in names:
    saved = json.loads((root / name / "config.json").read_text())
    assert f"cell={saved['model']['cell']}" in name
    assert f"learning_rate={saved['optim']['learning_rate']}" in name
  first = capsys.readouterr().out
  assert first.count(": done in") == 4
  # A rerun skips all four.
  assert sweep.main([f"--config={config}", f"--root={root}"]) == 0
  assert capsys.readouterr().out.count("done before, skipped") == 4
  table = (root / "report.md").read_text().splitlines()
  assert len(table) == 2 + 4
  losses = [float(line.split("|")[3]) for line in table[2:]]
  assert losses == sorted(losses)  # sorted by val/loss, best first
  assert (root / "curves.png").stat().st_size > 0


def test_failed_trial_is_reported(tmp_path, capsys):
  config = tmp_path / "bad_sweep.py"
  config.write_text(textwrap.dedent("""
      from rnnlab import base_config
      def get_config(arg=""):
        return base_config.get_config()
      def get_sweep(arg=""):
        return [{"model.cell": "gur"}]
      """))
  assert sweep.main([f"--config={config}", f"--root={tmp_path / 's'}"]) == 1
  err = capsys.readouterr().err
  assert "FAILED cell=gur" in err
  assert "Unknown cell 'gur'" in (tmp_path / "s" / "cell=gur" /
                                  "sweep.log").read_text()
