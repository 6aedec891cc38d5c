"""The CSV recipe (configs/gru_forecast_csv.py) on series it was never
tuned on, fed through the CSV path exactly as a user would.

Each held-out series is written to <root>/csv/<name>.csv (with a date
column where the dataset has dates), then trained with seeds 0, 1, 2
(experiments/forecast_seeds.py: a finished seed is not trained again).
The naive, seasonal naive and ARIMA figures come from the same runs, on the
same test split. The table (test MAE mean ± std over seeds, of the
checkpoint chosen on validation; ratio to naive and to ARIMA) goes to
<root>/heldout.md and, with --write_docs, into docs/forecasting.md between
the forecast-heldout markers.

  python -m experiments.forecast_heldout --root=runs/forecast_heldout --write_docs
  python -m experiments.forecast_heldout --series=airline,lynx --seeds=0
"""
from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import time

import numpy as np

from experiments import forecast_seeds

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "gru_forecast_csv.py"
DOC = ROOT / "docs" / "forecasting.md"
BEGIN, END = "<!-- forecast-heldout:begin -->", "<!-- forecast-heldout:end -->"


def _airline():
  from sktime.datasets import load_airline  # pylint: disable=g-import-not-at-top
  s = load_airline()
  return {"date": s.index.to_timestamp().strftime("%Y-%m-%d"),
          "value": s.to_numpy()}, "monthly airline passengers (thousands)"


def _lynx():
  from sktime.datasets import load_lynx  # pylint: disable=g-import-not-at-top
  s = load_lynx()
  return {"year": s.index.year, "value": s.to_numpy()}, (
      "yearly Canadian lynx trappings")


def _wineind():
  import pandas as pd  # pylint: disable=g-import-not-at-top
  from pmdarima import datasets  # pylint: disable=g-import-not-at-top
  s = datasets.load_wineind(as_series=True)
  dates = pd.to_datetime(s.index, format="%b %Y")
  return {"date": dates.strftime("%Y-%m-%d"), "value": s.to_numpy()}, (
      "monthly Australian wine sales (litres)")


def _taylor():
  from pmdarima import datasets  # pylint: disable=g-import-not-at-top
  # No dates in the dataset: half-hourly, so the file order is the order.
  return {"value": datasets.load_taylor()}, (
      "half-hourly electricity demand (MW), no dates")


def _realgdp():
  import statsmodels.api as sm  # pylint: disable=g-import-not-at-top
  f = sm.datasets.macrodata.load_pandas().data
  months = (f["quarter"].astype(int) - 1) * 3 + 1
  dates = [f"{int(y)}-{m:02d}-01" for y, m in zip(f["year"], months)]
  return {"date": dates, "value": f["realgdp"].to_numpy()}, (
      "quarterly US real GDP (billions of 2005 USD)")


HELDOUT = {"airline": _airline, "lynx": _lynx, "wineind": _wineind,
           "taylor": _taylor, "realgdp": _realgdp}


def export(name: str, directory: pathlib.Path) -> tuple[pathlib.Path, str,
                                                         str]:
  """<directory>/<name>.csv; returns (path, date column or "", what)."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  columns, what = HELDOUT[name]()
  directory.mkdir(parents=True, exist_ok=True)
  path = directory / f"{name}.csv"
  pd.DataFrame(columns).to_csv(path, index=False)
  date = next((c for c in ("date", "year") if c in columns), "")
  return path, date, what


def run_series(name: str, args) -> dict:
  path, date, what = export(name, pathlib.Path(args.root) / "csv")
  config = forecast_seeds.load_config(str(CONFIG), args.arg)
  config.forecast.csv, config.forecast.column = str(path), "value"
  config.forecast.date_column = date
  runs = []
  for seed in args.seeds:
    start = time.perf_counter()
    runs.append(forecast_seeds.run_seed(
        config, seed, pathlib.Path(args.root) / name / f"seed{seed}",
        checkpoint="best"))
    print(f"{name} seed {seed}: test MAE {runs[-1]['test']['mae']:.4g} "
          f"({time.perf_counter() - start:.0f} s)", flush=True)
  return {"name": name, "what": what, "runs": runs}


def _fmt(values) -> str:
  values = np.asarray(values, np.float64)
  std = values.std(ddof=1) if len(values) > 1 else 0.0
  return f"{values.mean():.4g} ± {std:.2g}"


def table(results: list[dict]) -> str:
  header = ("| Series | Test points | Decisions (train split) | GRU MAE | "
            "Naive MAE | Seasonal naive MAE | ARIMA (chosen on train) | "
            "ARIMA MAE | GRU / naive | GRU / ARIMA |")
  lines = [header, "|" + "---|" * 10]
  for r in results:
    tests = [x["test"] for x in r["runs"]]
    used = r["runs"][0]["decisions"].get("used", {})
    a = r["runs"][0]["arima"]
    arima = (f"({', '.join(map(str, a['order']))})"
             + (f"({', '.join(map(str, a['seasonal_order']))})"
                if any(a["seasonal_order"]) else "") + f" {a['trend']}")
    decisions = (f"{'diff' if used.get('difference') else 'levels'}, "
                 f"season {used.get('season') or 'none'}, "
                 f"window {used.get('window')}")
    snaive = (f"{tests[0]['snaive_mae']:.4g}" if "snaive_mae" in tests[0]
              else "n/a")
    lines.append(
        f"| {r['name']} | {int(tests[0]['forecasts'])} | {decisions} | "
        f"{_fmt([t['mae'] for t in tests])} | {tests[0]['naive_mae']:.4g} | "
        f"{snaive} | {arima} | {tests[0]['arima_mae']:.4g} | "
        f"{_fmt([t['mae'] / t['naive_mae'] for t in tests])} | "
        f"{_fmt([t['mae'] / t['arima_mae'] for t in tests])} |")
  return "\n".join(lines)


def write_docs(block: str, path: pathlib.Path = DOC):
  """Replaces what lies between the markers; the rest of the doc stays."""
  text = path.read_text()
  if text.count(BEGIN) != 1 or text.count(END) != 1:
    raise SystemExit(f"{path} needs one {BEGIN} and one {END}.")
  head, rest = text.split(BEGIN)
  _, tail = rest.split(END)
  path.write_text(f"{head}{BEGIN}\n{block}\n{END}{tail}")


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--root", default=str(ROOT / "runs" / "forecast_heldout"))
  p.add_argument("--series", default=",".join(HELDOUT))
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--arg", default="", help="The config arg, e.g. runlocal.")
  p.add_argument("--write_docs", action="store_true")
  args = p.parse_args(argv)
  args.seeds = [int(s) for s in args.seeds.split(",") if s]
  names = [n for n in args.series.split(",") if n]
  unknown = sorted(set(names) - set(HELDOUT))
  if unknown:
    p.error(f"--series: unknown {unknown}; valid: {', '.join(HELDOUT)}.")
  results = [run_series(n, args) for n in names]
  block = (f"Seeds {', '.join(map(str, args.seeds))}; model MAE: mean ± "
           "sample std over seeds, at the checkpoint chosen on validation; "
           "the baselines do not depend on the seed. "
           f"{datetime.date.today().isoformat()}, {platform.node()}.\n\n"
           + table(results) + "\n")
  root = pathlib.Path(args.root)
  root.mkdir(parents=True, exist_ok=True)
  (root / "heldout.md").write_text(block)
  (root / "heldout.json").write_text(json.dumps(results, indent=2) + "\n")
  print(block)
  if args.write_docs:
    write_docs(block)
  return results


if __name__ == "__main__":
  main()
