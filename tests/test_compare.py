"""The cell-comparison report from trial workdirs (no training here; the
trials' machinery is rnnlab.sweep, tested in test_sweep.py)."""
from __future__ import annotations

import json

from experiments import compare
from rnnlab import sweep


def _fake_trial(workdir, loss, params, steps_per_second):
  workdir.mkdir(parents=True)
  records = [
      {"step": 5, "split": "train", "steps_per_second": steps_per_second,
       "tokens_per_second": 100 * steps_per_second},
      {"step": 5, "split": "val", "loss": loss + 0.5},
      {"step": 10, "split": "val", "loss": loss}]
  (workdir / "metrics.jsonl").write_text(
      "".join(json.dumps(r) + "\n" for r in records))
  (workdir / "status.json").write_text(json.dumps({"status": "done"}))
  (workdir / "model.json").write_text(json.dumps({"parameters": params}))
  (workdir / "trial.json").write_text(json.dumps(
      {"overrides": {}, "seconds": 12.0, "exit_code": 0}))


def test_report_has_mean_std_per_cell_and_a_plot(tmp_path):
  root = tmp_path / "runs"
  for cell, losses, params in [("rnn", (2.0, 2.2), 1000),
                               ("gru", (1.5, 1.7), 3000)]:
    for seed, loss in enumerate(losses):
      name = sweep.trial_name({"model.cell": cell, "seed": seed})
      _fake_trial(root / "char_lm" / name, loss, params, 10.0)
  doc = tmp_path / "docs" / "cmp.md"
  assert compare.main([f"--root={root}", f"--doc={doc}", "--tasks=char_lm",
                       "--cells=rnn,gru", "--seeds=0,1",
                       "--report_only"]) == 0
  text = doc.read_text()
  rows = {l.split("|")[1].strip(): l.split("|") for l in text.splitlines()
          if l.startswith("| rnn") or l.startswith("| gru")}
  assert rows["rnn"][2].strip() == "1,000" and rows["gru"][2].strip() == "3,000"
  assert rows["rnn"][3].strip() == "100.0"  # ms per step at 10 steps/s
  assert rows["rnn"][5].strip() == "2.1 ± 0.14"
  assert rows["gru"][5].strip() == "1.6 ± 0.14"
  assert "12 s" in rows["gru"][6]
  assert (tmp_path / "docs" / "cmp.png").stat().st_size > 0
  assert (root / "comparison.md").read_text() == text
  assert (root / "cmp.png").read_bytes() == (
      tmp_path / "docs" / "cmp.png").read_bytes()
  # A report written among the runs themselves: nothing to copy.
  inside = root / "report.md"
  assert compare.main([f"--root={root}", f"--doc={inside}", "--tasks=char_lm",
                       "--cells=rnn,gru", "--seeds=0,1",
                       "--report_only"]) == 0
  assert inside.read_text() == text.replace("cmp.png", "report.png").replace(
      f"--doc={doc}", f"--doc={inside}")


def test_unknown_task_is_a_clear_error(tmp_path, capsys):
  assert compare.main([f"--root={tmp_path}", "--tasks=speech"]) == 2
  assert "Valid choices: char_lm, forecast, classify" in capsys.readouterr().err
