"""Cell comparison (exercise 7.3): Elman RNN, LSTM and GRU on the same task
and budget, for char LM, forecasting and classification, over 3 seeds.

  python -m experiments.compare --root=runs/compare --doc=docs/cell_comparison.md
  python -m experiments.compare --root=/tmp/cmp --tasks=classify --seeds=0 --doc=/tmp/cmp/report.md
  # --config.<key>=<value> flags apply to every trial, e.g. a smaller budget.

Every (task, cell, seed) is a trial of `rnnlab.sweep` (its own workdir
<root>/<task>/cell=<cell>,seed=<seed>; finished trials are skipped on a
rerun). Within a task only the cell and the seed change. The report
(markdown table + a PNG of validation curves, mean over seeds, drawn by the
sweep's `draw_curves`) goes to --doc and <root>/comparison.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import pathlib
import platform
import shutil
import statistics
import sys
from typing import Any

from rnnlab import cli
from rnnlab import sweep

ROOT = pathlib.Path(__file__).resolve().parents[1]
CELLS = ("rnn", "lstm", "gru")


@dataclasses.dataclass(frozen=True)
class Comparison:
  """One task's comparison: a config, overrides that set the shared budget,
  and the metric of the final evaluation that the table reports."""
  config: str
  overrides: dict[str, Any]
  metric: str           # "split/key" in metrics.jsonl
  better: str           # "min" or "max"
  label: str            # how the table names the metric
  curve: str = "val/loss"


COMPARISONS = {
    # Small char LM: 2 x 128, 500 steps of 32 x 64 characters.
    "char_lm": Comparison(
        "configs/gru_shakespeare.py",
        {"model.hidden_size": 128, "train.batch_size": 32,
         "train.seq_len": 64, "train.steps": 500, "train.eval_every": 250,
         "train.checkpoint_every": 500, "train.sample_every": 0,
         "train.log_every": 50},
        "val/loss", "min", "val nats/char"),
    "forecast": Comparison(
        "configs/gru_forecast_sine.py", {}, "test/rmse", "min",
        "sine test RMSE"),
    "classify": Comparison(
        "configs/gru_japanese_vowels.py", {}, "test/accuracy", "max",
        "JapaneseVowels test accuracy"),
}


def trials(cells, seeds) -> list[dict[str, Any]]:
  return [{"model.cell": c, "seed": s} for c in cells for s in seeds]


def _median(values):
  values = [v for v in values if v is not None and math.isfinite(v)]
  return statistics.median(values) if values else math.nan


def _mean_std(values) -> str:
  values = [v for v in values if math.isfinite(v)]
  if not values:
    return "n/a"
  std = statistics.stdev(values) if len(values) > 1 else 0.0
  return f"{statistics.mean(values):.4g} ± {std:.2g}"


def summarise(task: str, comp: Comparison, root: pathlib.Path, cells,
              seeds) -> list[dict[str, Any]]:
  """One row per cell: parameters, step time, tokens/s, metric, wall."""
  rows = []
  for cell in cells:
    runs = [sweep.read_trial(root / task / sweep.trial_name(t))
            for t in trials([cell], seeds)]
    train = [r for run in runs for r in run["records"]
             if r["split"] == "train"]
    model = {}
    model_file = runs[0]["workdir"] / "model.json"
    if model_file.exists():
      model = json.loads(model_file.read_text())
    rows.append({
        "cell": cell,
        "parameters": model.get("parameters"),
        "step_ms": 1000 / _median([r.get("steps_per_second") for r in train]),
        "tokens_per_s": _median([r.get("tokens_per_second") for r in train]),
        "metric": [sweep.metric_value(run, comp.metric) for run in runs],
        "wall": [run["seconds"] for run in runs if run["seconds"]],
        "status": sorted({run["status"] for run in runs}),
        "runs": runs,
    })
  return rows


def markdown(results, seeds, command: str) -> str:
  lines = [
      "# Cell comparison: Elman RNN, LSTM, GRU", "",
      f"Generated {datetime.date.today()} on {platform.node() or 'this host'}"
      f" ({platform.machine()}, {_cores()} CPU cores) by", "",
      f"    {command}", "",
      f"Each row: mean ± std over seeds {', '.join(map(str, seeds))}; "
      "step time and tokens/s are medians over the log intervals of all "
      "seeds (tokens = the task's inputs per step; 0 where a task does not "
      "count them); wall is the mean time of one whole command.", ""]
  for task, (comp, rows) in results.items():
    overrides = ", ".join(f"{k}={v}" for k, v in comp.overrides.items())
    lines += [f"## {task}: {comp.label} ({comp.better} is better)", "",
              f"`{comp.config}`" + (f" with {overrides}" if overrides
                                    else "") + "; only the cell changes.", "",
              f"| cell | parameters | step time (ms) | tokens/s | "
              f"{comp.label} | wall per run | status |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
      params = f"{r['parameters']:,}" if r["parameters"] else "-"
      wall = (f"{statistics.mean(r['wall']):.0f} s" if r["wall"] else "-")
      lines.append(
          f"| {r['cell']} | {params} | {r['step_ms']:.1f} | "
          f"{r['tokens_per_s']:,.0f} | {_mean_std(r['metric'])} | {wall} | "
          f"{', '.join(r['status'])} |")
    lines.append("")
  lines += ["![validation curves, mean over seeds](cell_comparison.png)", ""]
  return "\n".join(lines)


def _cores() -> int:
  return os.cpu_count() or 0


def plot(results, path: pathlib.Path) -> pathlib.Path:
  """One panel per task: each cell's validation curve, mean over seeds."""
  fig, axes = sweep.figure(len(results), (5 * len(results), 4))
  for ax, (task, (comp, rows)) in zip(axes, results.items()):
    sweep.draw_curves(ax, {r["cell"]: r["runs"] for r in rows}, comp.curve)
    ax.set_title(task)
  return sweep.save_figure(fig, path)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--root", required=True)
  p.add_argument("--doc", default=str(ROOT / "docs" / "cell_comparison.md"))
  p.add_argument("--tasks", default=",".join(COMPARISONS))
  p.add_argument("--cells", default=",".join(CELLS))
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--parallel", type=int, default=1)
  p.add_argument("--report_only", action="store_true")
  args, extra = p.parse_known_args(argv)
  bad = [a for a in extra if not a.startswith("--config.")]
  if bad:
    p.error(f"Unknown arguments {bad}; only --config.<key>=<value> "
            "overrides pass through to every trial (e.g. a smaller budget).")
  try:
    tasks = cli.comma_choices(args.tasks, COMPARISONS, "--tasks")
    cells = cli.comma_choices(args.cells, CELLS, "--cells")
    seeds = [int(s) for s in args.seeds.split(",") if s]
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  root = pathlib.Path(args.root)
  failed, results = [], {}
  for task in tasks:
    comp = COMPARISONS[task]
    if not args.report_only:
      done = sweep.run(str(ROOT / comp.config), root / task,
                       trials(cells, seeds), args.parallel,
                       sweep.override_flags(comp.overrides) + extra)
      failed += [f"{task}/{r.name}: {r.status}" for r in done
                 if r.status != "done"]
    results[task] = (comp, summarise(task, comp, root, cells, seeds))
  doc = pathlib.Path(args.doc)
  doc.parent.mkdir(parents=True, exist_ok=True)
  command = "python -m experiments.compare " + " ".join(argv or sys.argv[1:])
  png = plot(results, doc.with_suffix(".png"))
  text = markdown(results, seeds, command).replace(
      "cell_comparison.png", png.name)
  doc.write_text(text)
  # A copy next to the runs, unless the doc (or its plot) is already there.
  if doc.resolve() != (root / "comparison.md").resolve():
    (root / "comparison.md").write_text(text)
  if png.resolve() != (root / png.name).resolve():
    shutil.copy(png, root / png.name)
  print(text)
  for f in failed:
    print(f"FAILED {f}", file=sys.stderr)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
