"""Sweeps: a 2x2 grid runs locally, a rerun skips finished trials, the
report lists every trial; failures are reported. The job-array pieces:
--pending lists unfinished trial indices (and writes trials.json), --trial=K
runs trial K alone and refuses a bad index or a changed sweep."""
from __future__ import annotations

import json
import os
import textwrap

import pytest

from rnnlab import sweep
from rnnlab.errors import UserError
from tests.helpers import tiny_sweep


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
  config, root = tiny_sweep(tmp_path)
  assert sweep.main([f"--config={config}", f"--root={root}",
                     "--parallel=2"]) == 0
  names = sorted(p.name for p in root.iterdir() if p.is_dir())
  assert names == ["cell=gru,learning_rate=0.003", "cell=gru,learning_rate=0.01",
                   "cell=rnn,learning_rate=0.003", "cell=rnn,learning_rate=0.01"]
  for name in names:
    saved = json.loads((root / name / "config.json").read_text())
    assert f"cell={saved['model']['cell']}" in name
    assert f"learning_rate={saved['optim']['learning_rate']}" in name
    # Wall clocks compare only at the same CPU count, so it is recorded.
    assert sweep.read_trial(root / name)["cpus"] == len(os.sched_getaffinity(0))
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
  log = (tmp_path / "s" / "cell=gur" / "sweep.log").read_text()
  assert "Unknown cell" in log and "'gur'" in log
  # As an array task it fails too (a nonzero exit marks the task failed).
  assert sweep.main([f"--config={config}", f"--root={tmp_path / 's'}",
                     "--trial=0"]) == 1
  assert "FAILED cell=gur: not started (exit" in capsys.readouterr().err


def test_index_ranges_use_slurm_array_syntax():
  assert sweep.index_ranges([7, 0, 3, 2, 4]) == "0,2-4,7"
  assert sweep.index_ranges([5]) == "5" and sweep.index_ranges([]) == ""


def test_pending_skips_done_trials_and_writes_the_manifest(tmp_path, capsys):
  config, root = tiny_sweep(tmp_path)
  args = [f"--config={config}", f"--root={root}"]
  done = root / "cell=rnn,learning_rate=0.003"  # trial 1
  done.mkdir(parents=True)
  (done / "status.json").write_text(json.dumps({"status": "done"}))
  assert sweep.main([*args, "--pending"]) == 0
  assert capsys.readouterr().out == "0,2-3\n"
  manifest = json.loads((root / "trials.json").read_text())
  assert manifest["config"] == str(config)
  assert manifest["trials"]["1"] == {
      "name": "cell=rnn,learning_rate=0.003",
      "overrides": {"model.cell": "rnn", "optim.learning_rate": 0.003}}
  assert sorted(manifest["trials"], key=int) == ["0", "1", "2", "3"]
  # An index outside the sweep names the valid range.
  assert sweep.main([*args, "--trial=4"]) == 2
  assert "--trial=4 is out of range: this sweep has 4 trials, indices 0-3" in (
      capsys.readouterr().err)
  # A sweep edited after trials.json was written (an array in flight would
  # run other trials than submitted) is refused.
  tiny_sweep(tmp_path, get_sweep="""
      def get_sweep(arg=""):
        return {"model.cell": ["lstm"], "optim.learning_rate": [0.01, 0.003]}
      """)
  assert sweep.main([*args, "--trial=0"]) == 2
  assert "the sweep changed" in capsys.readouterr().err
  assert not (root / "cell=lstm,learning_rate=0.01").exists()


def test_one_trial_by_index_then_report_lists_the_rest(tmp_path, capsys):
  config, root = tiny_sweep(tmp_path)
  args = [f"--config={config}", f"--root={root}"]
  assert sweep.main([*args, "--trial=2"]) == 0
  assert "cell=gru,learning_rate=0.01: done in" in capsys.readouterr().out
  # Only trial 2 ran, with its overrides.
  assert sorted(p.name for p in root.iterdir()) == [
      "cell=gru,learning_rate=0.01", "trials.json"]
  saved = json.loads((root / "cell=gru,learning_rate=0.01" /
                      "config.json").read_text())
  assert (saved["model"]["cell"], saved["optim"]["learning_rate"]) == (
      "gru", 0.01)
  assert sweep.main([*args, "--pending"]) == 0
  assert capsys.readouterr().out == "0-1,3\n"
  assert sweep.main([*args, "--trial=2"]) == 0  # a requeued task: skipped
  assert "done before, skipped" in capsys.readouterr().out
  # The report after an (unfinished) array: all four rows, and the three
  # trials not done listed with a failing exit code.
  assert sweep.main([*args, "--report_only"]) == 1
  err = capsys.readouterr().err
  assert err.count("NOT DONE") == 3 and "cell=gru,learning_rate=0.01" not in err
  table = (root / "report.md").read_text().splitlines()
  assert len(table) == 2 + 4 and table[2].split("|")[5].strip() == "done"
