"""Forecasts past the end of a trained forecasting run's series.

    python -m rnnlab.predict --workdir=runs/co2 --steps=52 [--output=f.png]

Loads the run's config.json, its saved scaling (forecast_scaler.json) and
its best checkpoint (chosen on validation; the newest if there is none yet)
unless --checkpoint=latest, reloads the series, and forecasts the next
--steps values: with steps <= forecast.horizon, the model's direct
multi-step outputs from one pass over the last window; otherwise a
recursive roll-out of one-step forecasts, each fed back as the newest input
(refused for a run whose inputs include columns other than the target:
their future values are unknown).
Prints JSON (the forecast with its time labels) and writes a PNG of the
recent history and the forecast (default <workdir>/forecast_future.png).
"""
from __future__ import annotations

import json
import pathlib
import sys

from absl import flags
import numpy as np

from rnnlab import cli
from rnnlab.errors import UserError
from rnnlab.tasks import forecast

PLOT_FILE = "forecast_future.png"


def predict(workdir: str | pathlib.Path, steps: int,
            output: str | pathlib.Path | None = None,
            history: int = 0, checkpoint_name: str = "best") -> dict:
  """Forecasts `steps` values after the series' end; writes the plot to
  `output` (default <workdir>/forecast_future.png) showing the last
  `history` points (0: 4 x steps, at least 100) and returns the record.
  `checkpoint_name`: "best" (chosen on validation) or "latest"."""
  if steps < 1:
    raise UserError(f"--steps={steps} must be >= 1.")
  if history < 0:
    raise UserError(f"--history={history} must be >= 0 (0 = 4 x steps).")
  workdir = pathlib.Path(workdir)
  task, step, params, name = forecast.load_for_inference(workdir, None,
                                                         checkpoint_name)
  values, method = task.forecast_future(params, steps)
  series = task.series
  times = series.time[-1] + series.time_step * np.arange(1, steps + 1)
  output = pathlib.Path(output) if output else workdir / PLOT_FILE
  shown = history or max(4 * steps, 100)
  _plot(output, series.time[-shown:], series.values[-shown:], times, values,
        f"{series.name}: {steps} steps after the end ({method}, {name} "
        f"checkpoint, step {step})", series.unit)
  return {"workdir": str(workdir), "series": series.name,
          "checkpoint": name, "checkpoint_step": step, "method": method,
          "steps": steps,
          "last": {"time": float(series.time[-1]),
                   "value": float(series.values[-1])},
          "forecast": [{"time": float(t), "value": float(v)}
                       for t, v in zip(times, values)],
          "plot": str(output)}


def _plot(path, past_time, past, future_time, future, title, unit):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(10, 4))
  ax.plot(past_time, past, color="black", lw=1, label="observed")
  ax.plot(np.concatenate([past_time[-1:], future_time]),
          np.concatenate([past[-1:], future]), color="tab:blue", lw=1.5,
          label="forecast")
  ax.set_title(title)
  ax.set_xlabel("time")
  ax.set_ylabel(unit or "value")
  ax.legend(fontsize=8)
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv):
  del argv
  f = flags.FLAGS
  record = predict(f.workdir, f.steps, f.output or None, f.history,
                   f.checkpoint)
  sys.stdout.write(json.dumps(record, indent=2) + "\n")


def _define_flags():
  flags.DEFINE_string("workdir", None, "Forecasting run directory with a "
                      "checkpoint.", required=True)
  flags.DEFINE_integer("steps", 1, "Values to forecast after the end.")
  flags.DEFINE_string("output", "", "PNG path; default "
                      f"<workdir>/{PLOT_FILE}.")
  flags.DEFINE_integer("history", 0, "Observed points to plot before the "
                       "forecast; 0 = 4 x steps (at least 100).")
  flags.DEFINE_enum("checkpoint", "best", ["best", "latest"],
                    "best: the checkpoint chosen on validation (the newest "
                    "if the run has none yet); latest: the newest.")


def run():
  cli.run_command(_define_flags, main)


if __name__ == "__main__":
  run()
