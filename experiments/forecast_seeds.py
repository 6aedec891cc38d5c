"""Forecasting results over seeds: a config trained with seeds 0, 1, 2 and
its test metrics (model and baselines) as a markdown table, mean ± std.

One workdir per seed, <root>/<config stem>/seed<s>; a seed whose workdir has
status.json {"status": "done"} is not trained again (an interrupted one
resumes from its checkpoint), so the command can be rerun at will. Writes
<root>/<config stem>/results.md and results.json, and prints the table.

The model's figures are those of the last evaluation (status.json), as
the tables in docs/forecasting.md were measured; --checkpoint=best takes
those of the checkpoint the validation loss chose (<workdir>/
forecast_test.json, written by the task from <workdir>/best/), as
experiments/forecast_heldout.py does.

  python -m experiments.forecast_seeds --config=configs/gru_forecast_co2.py
  python -m experiments.forecast_seeds --config=configs/gru_forecast_sine.py \
      --seeds=0 --root=/tmp/seeds --arg=runlocal
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import pathlib
import platform
import time
from typing import Any

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
TRIAL_FILE = "trial.json"  # this script's record of a seed: wall time, date
BASELINES = (("naive", "Naive (last value)"),
             ("snaive", "Seasonal naive"),
             ("arima", "ARIMA"))


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", required=True, help="A configs/*_forecast_*.py.")
  p.add_argument("--arg", default="", help="The config arg, e.g. runlocal.")
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--root", default=str(ROOT / "runs" / "forecast_seeds"))
  p.add_argument("--checkpoint", default="last", choices=("best", "last"),
                 help="best: the checkpoint chosen on validation; last: the "
                 "last evaluation.")
  args = p.parse_args(argv)
  try:
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
  except ValueError:
    p.error(f"--seeds={args.seeds!r}: give comma-separated integers.")
  if not args.seeds:
    p.error("--seeds names no seed.")
  return args


def load_config(path: str, arg: str = ""):
  path = pathlib.Path(path)
  if not path.is_file():
    raise SystemExit(f"--config={str(path)!r}: no such file.")
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg)
  if config.task != "forecast":
    raise SystemExit(f"{path} is a task={config.task!r} config; this script "
                     "runs task='forecast' configs.")
  return config


def run_seed(config, seed: int, workdir: pathlib.Path,
             checkpoint: str = "last") -> dict[str, Any]:
  """Trains (or reuses) one seed; returns its test and validation metrics
  (of the best checkpoint, or with `checkpoint` "last" of the last
  evaluation), the ARIMA spec and decisions of its report, and time."""
  from rnnlab import train  # pylint: disable=g-import-not-at-top
  status_path = workdir / "status.json"
  status = (json.loads(status_path.read_text()) if status_path.exists()
            else {})
  if status.get("status") != "done":
    config = config.copy_and_resolve_references()
    config.seed = seed
    config.train.progress_bar = False
    print(f"train {workdir}", flush=True)
    start = time.perf_counter()
    train.train_and_evaluate(config, workdir)
    (workdir / TRIAL_FILE).write_text(json.dumps({
        "seed": seed, "wall_seconds": time.perf_counter() - start,
        "date": datetime.date.today().isoformat(),
        "cpus": len(os.sched_getaffinity(0))}) + "\n")
    status = json.loads(status_path.read_text())
  else:
    print(f"skip  {workdir}: done", flush=True)
  trial = json.loads((workdir / TRIAL_FILE).read_text()) if (
      workdir / TRIAL_FILE).exists() else {}
  report = json.loads((workdir / "forecast_test.json").read_text())
  out = {"seed": seed, "step": status["step"], "test": status["eval"]["test"],
         "val": status["eval"]["val"], "checkpoint": "last",
         "arima": {k: report["arima"][k] for k in ("order", "seasonal_order",
                                                   "trend")},
         "decisions": report.get("decisions", {}),
         "wall_seconds": trial.get("wall_seconds"),
         "cpus": trial.get("cpus")}
  if checkpoint == "best" and "checkpoint" in report:
    out.update(step=report["checkpoint"]["step"], test=report["metrics"],
               val=report["val_metrics"], checkpoint="best")
  return out


def _mean_std(values, seeded: bool = True) -> str:
  """"mean ± sample std"; a baseline's value, the same for every seed,
  without the ± (checked)."""
  values = np.asarray(values, np.float64)
  if not seeded:
    if not np.allclose(values, values[0], rtol=1e-9, atol=0):
      raise AssertionError(f"A baseline differs across seeds: {values}.")
    return f"{values[0]:.4g}"
  std = values.std(ddof=1) if len(values) > 1 else 0.0
  return f"{values.mean():.4g} ± {std:.2g}"


def table(config, runs: list[dict[str, Any]]) -> str:
  """Markdown: one row per forecaster; the model's test metrics as mean ±
  sample std (ddof=1) over seeds, each baseline's once (it does not depend
  on the seed)."""
  tests = [r["test"] for r in runs]
  clean = "rmse_clean" in tests[0]
  e = runs[0]["arima"]  # the run's own: chosen on train with arima_search
  arima = (f"ARIMA{tuple(e['order'])}"
           + (f"x{tuple(e['seasonal_order'])}"
              if any(e["seasonal_order"]) else "")
           + f" trend={e['trend']!r}")
  used = runs[0]["decisions"].get("used", {})
  window = used.get("window", config.forecast.window)
  season = used.get("season", config.forecast.season)
  header = ["Forecaster", "MAE", "RMSE", "MASE"]
  header += ["RMSE vs noise-free"] if clean else []
  header += ["MAE / ARIMA MAE"]
  rows = []
  names = [("", f"{config.model.cell.upper()} (hidden "
                f"{config.model.hidden_size}, window "
                f"{window})")]
  names += [(f"{k}_", arima if k == "arima" else label)
            for k, label in BASELINES if f"{k}_mae" in tests[0]]
  if season:
    names = [(p, f"{n} ({season})" if p == "snaive_" else n)
             for p, n in names]
  for prefix, name in names:
    seeded = not prefix  # the model; baselines do not depend on the seed
    row = [name] + [_mean_std([t[prefix + m] for t in tests], seeded)
                    for m in ("mae", "rmse", "mase")]
    if clean:
      row.append(_mean_std([t[prefix + "rmse_clean"] for t in tests], seeded))
    row.append(_mean_std([t[prefix + "mae"] / t["arima_mae"] for t in tests],
                         seeded))
    rows.append(row)
  lines = ["| " + " | ".join(header) + " |",
           "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(r) + " |" for r in rows]
  return "\n".join(lines)


def checks(runs: list[dict[str, Any]]) -> list[str]:
  """The acceptance comparisons, per seed."""
  out = []
  for r in runs:
    t = r["test"]
    beats = [f"{k} {t[k + '_mae']:.4g}: "
             + ("yes" if t["mae"] < t[k + "_mae"] else "NO")
             for k in ("naive", "snaive") if f"{k}_mae" in t]
    line = (f"seed {r['seed']}: test MAE {t['mae']:.4g}; beats "
            + "; ".join(beats) + f"; ratio to ARIMA {t['mae_ratio_arima']:.3f}")
    if "rmse_clean" in t:
      floor = 0.2 / np.sqrt(3)
      line += (f"; RMSE {t['rmse']:.4f} = {t['rmse'] / floor:.3f} x the "
               f"noise floor {floor:.4f}; RMSE vs noise-free "
               f"{t['rmse_clean']:.4f}")
    if r["wall_seconds"] is not None:
      line += f"; trained in {r['wall_seconds']:.0f} s"
    out.append(line)
  return out


def main(argv=None):
  args = parse_args(argv)
  config = load_config(args.config, args.arg)
  stem = pathlib.Path(args.config).stem + (f"_{args.arg}" if args.arg else "")
  root = pathlib.Path(args.root) / stem
  runs = [run_seed(config, s, root / f"seed{s}", args.checkpoint)
          for s in args.seeds]
  md = (f"`{args.config}`{f' ({args.arg})' if args.arg else ''}, test "
        f"split, seeds {', '.join(map(str, args.seeds))} "
        f"(model: mean ± sample std; baselines do not depend on the seed), "
        + (f"checkpoints chosen on validation (steps "
           f"{', '.join(str(r['step']) for r in runs)}); "
           if args.checkpoint == "best" else
           f"final step {runs[0]['step']}; ")
        + f"{datetime.date.today().isoformat()}, {platform.node()}\n\n"
        + table(config, runs) + "\n\n"
        + "\n".join(f"- {line}" for line in checks(runs)) + "\n")
  root.mkdir(parents=True, exist_ok=True)
  (root / "results.md").write_text(md)
  (root / "results.json").write_text(json.dumps(runs, indent=2) + "\n")
  print(md)
  return runs


if __name__ == "__main__":
  main()
