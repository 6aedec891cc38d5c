"""Window x hidden-size sweep on one series (default: weekly CO2 under
configs/gru_forecast_co2.py), 3 seeds per cell, for docs/forecasting.md.

Each cell changes forecast.window (the loss on its last half:
forecast.loss_positions = window // 2) and model.hidden_size and keeps the
rest of the config. Every figure is of the checkpoint chosen on validation
(<workdir>/best/, read from forecast_test.json): validation MAE decides,
test MAE is reported beside it. One workdir per cell and seed,
<root>/w<window>_h<hidden>/seed<s>; a finished one is not trained again
(experiments/forecast_seeds.py), so the command can be rerun at will.

  python -m experiments.forecast_window_sweep --root=runs/forecast_window --write_docs
  python -m experiments.forecast_window_sweep --root=/tmp/fw --windows=26 \
      --hidden=8 --seeds=0 --arg=runlocal
"""
from __future__ import annotations

import argparse
import datetime
import pathlib
import statistics
import sys

from experiments import forecast_seeds
from experiments import sentiment_study as study

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "forecasting.md"
BEGIN, END = ("<!-- forecast-window-sweep:begin -->",
              "<!-- forecast-window-sweep:end -->")


def _ints(text: str, flag: str) -> list[int]:
  try:
    values = [int(x) for x in text.split(",") if x]
  except ValueError:
    values = []
  if not values or min(values) < 1:
    raise SystemExit(f"error: {flag}={text!r}: expected positive integers "
                     "separated by commas, e.g. 26,52,104.")
  return values


def cell_config(base, window: int, hidden: int):
  c = base.copy_and_resolve_references()
  c.forecast.window, c.forecast.loss_positions = window, window // 2
  c.model.hidden_size = hidden
  return c


def _mean_std(values) -> str:
  return study.mean_std(values, scale=1.0, digits=4)


def table(results: dict[tuple[int, int], list[dict]], shipped: tuple[int, int]
          ) -> tuple[str, tuple[int, int]]:
  """Markdown rows per (window, hidden) and the cell with the lowest mean
  validation MAE."""
  val = {k: statistics.mean(r["val"]["mae"] for r in runs)
         for k, runs in results.items()}
  chosen = min(val, key=val.get)
  cores = study.cores_note(r.get("cpus") for runs in results.values()
                           for r in runs)
  lines = ["| Window | Hidden | Validation MAE | Test MAE | Test MAE / naive "
           f"| Test MAE / ARIMA | Wall per run{cores} |",
           "|---|---|---|---|---|---|---|"]
  for (w, h), runs in sorted(results.items()):
    mark = []
    if (w, h) == chosen:
      mark.append("chosen on validation")
    if (w, h) == shipped:
      mark.append("the config's")
    name = f"{w}" + (f" ({', '.join(mark)})" if mark else "")
    walls = [r["wall_seconds"] for r in runs if r["wall_seconds"]]
    lines.append(
        f"| {name} | {h} | {_mean_std([r['val']['mae'] for r in runs])} | "
        f"{_mean_std([r['test']['mae'] for r in runs])} | "
        f"{_mean_std([r['test']['mae'] / r['test']['naive_mae'] for r in runs])}"
        f" | {_mean_std([r['test']['mae_ratio_arima'] for r in runs])} | "
        + (f"{statistics.mean(walls):.0f} s |" if walls else "n/a |"))
  return "\n".join(lines), chosen


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", default=str(ROOT / "configs" /
                                         "gru_forecast_co2.py"))
  p.add_argument("--arg", default="")
  p.add_argument("--root", default="runs/forecast_window")
  p.add_argument("--windows", default="26,52,104,208")
  p.add_argument("--hidden", default="8,16,32,64")
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--write_docs", action="store_true")
  args = p.parse_args(argv)
  windows = _ints(args.windows, "--windows")
  hidden = _ints(args.hidden, "--hidden")
  seeds = [int(s) for s in args.seeds.split(",") if s]
  base = forecast_seeds.load_config(args.config, args.arg)
  root = pathlib.Path(args.root)
  results = {}
  for w in windows:
    for h in hidden:
      config = cell_config(base, w, h)
      results[w, h] = [
          forecast_seeds.run_seed(config, s, root / f"w{w}_h{h}" / f"seed{s}",
                                  checkpoint="best") for s in seeds]
  text, chosen = table(results, (base.forecast.window, base.model.hidden_size))
  t0 = results[chosen][0]["test"]
  arima = results[chosen][0]["arima"]
  block = "\n".join([
      BEGIN,
      f"Measured {datetime.date.today()} on {study.cpu_model()}, one run at "
      "a time:",
      "", "```", study.rerun_command("experiments.forecast_window_sweep",
                                     argv), "```", "",
      f"`{pathlib.Path(args.config).name}` ({base.forecast.series}), seeds "
      f"{', '.join(map(str, seeds))}, mean ± std; the checkpoint chosen on "
      "validation in each run. On the same test split: last-value naive "
      f"MAE {t0['naive_mae']:.4f}, ARIMA{tuple(arima['order'])} "
      f"{t0['arima_mae']:.4f}.", "", text, "", END])
  print(block)
  if args.write_docs:
    study.write_doc(DOC, block, BEGIN, END)
  return 0


if __name__ == "__main__":
  sys.exit(main())
