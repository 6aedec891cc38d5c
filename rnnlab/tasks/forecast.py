"""Time-series forecasting with a recurrent stack and baselines.

Data (rnnlab/data/series.py): forecast.series ("sine", "co2", "sunspots",
"msft", "csv"), the target forecast.column and the model's inputs
forecast.input_columns (() = the target alone), forecast.missing, a
chronological split by forecast.val_fraction and forecast.test_fraction,
optional first differences of the target (forecast.difference), and each
input column standardised with its own train-split mean and std.

Model: model.name = "sequence" (`models/sequence.py`): the recurrent stack
(model.cell, hidden_size, num_layers, ...) over a window [B, W, F] of the
F normalised input columns and a Dense readout to forecast.horizon outputs
of the target per step;
output j at position i forecasts the (j+1)-th value after position i
(direct multi-output).

Training: MSE in normalised units on random windows from the train split,
with the window's next H values as targets at each of its last
forecast.loss_positions positions. Batch `step` is a pure function of
(config.seed, step).

Evaluation of a split ("val" or "test"): rolling origin over every point of
the split. The forecast of x_t reads only x_{t-W} .. x_{t-1} (the window up
to its origin t-1, reaching back into earlier splits). Metrics in original
units: "mae", "rmse", "mase" (MAE over the in-sample MAE on the train split
of the lag-forecast.mase_lag naive forecast: lag 1 = last value, which every
config here uses), "loss" = the one-step MSE in normalised units (early
stopping and the best checkpoint use it). With forecast.horizon H > 1 also
"mae_h<H>", the MAE of the H-step-ahead output. The sine also reports
"rmse_clean", the RMSE against the noise-free sin(t/10).

Baselines, on the target alone, with the same rolling-origin one-step
protocol on the same points: "naive_*" (x_{t-1}), "snaive_*"
(x_{t-season}, forecast.season > 0),
"arima_*": statsmodels ARIMA(forecast.arima_order,
forecast.arima_seasonal_order, forecast.arima_trend) fitted once on the
train split, then extended over validation and test with its parameters
fixed (results.append(...,
refit=False)); each of its forecasts is the Kalman filter's one-step
prediction from the data before it. "mae_ratio_arima" = model MAE / ARIMA
MAE (< 1: the model wins).

Decisions from the train split (configs/gru_forecast_csv.py), each logged
and saved in forecast_scaler.json ("decisions") and forecast_test.json:
forecast.auto_difference (ADF and KPSS tests), forecast.detect_season (the
autocorrelation; a given forecast.season wins), forecast.window_fraction
(the window and loss_positions shrink for a short series) and
forecast.arima_search (the ARIMA order by AIC). `self.difference`,
`self.season`, `self.window` and `self.loss_positions` are what the run
uses, the config's keys where no decision is asked for.

Reports (forecast_test.json, forecast_test.png) are of the checkpoint that
the validation loss chose (<workdir>/best/; the newest where there is none):
"checkpoint" gives its step.
"""
from __future__ import annotations

import functools
import json
import pathlib
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import base_config
from rnnlab import metrics as metrics_lib
from rnnlab import rundir
from rnnlab.data import series as series_lib
from rnnlab.errors import CheckpointError, UserError
from rnnlab.tasks import base

SCALER_FILE = "forecast_scaler.json"
PLOT_FILE = "forecast_test.png"
FORECASTS_FILE = "forecast_test.json"
TREND_CHOICES = ("n", "c", "t", "ct")


def forecast_loss(model, params, batch, rng, positions: int, train=True):
  """MSE of outputs [B, W, H] against targets [B, W, H] over the last
  `positions` positions of each window."""
  outputs, _ = model.apply({"params": params}, batch["inputs"], train=train,
                           rngs={"dropout": rng})
  error = outputs[:, -positions:] - batch["targets"][:, -positions:]
  return jnp.mean(jnp.square(error)), {}


@functools.partial(jax.jit, static_argnums=0)
def _last_outputs(model, params, inputs: jax.Array) -> jax.Array:
  """Windows [K, W, F] -> the forecasts from their last position [K, H]."""
  outputs, _ = model.apply({"params": params}, inputs)
  return outputs[:, -1]


class ForecastTask(base.Task):
  """forecast.series with a `SequenceModel`, evaluated against baselines."""

  models = ("sequence",)

  @classmethod
  def check_config(cls, config):
    d = config.forecast
    base.check_split_fractions("forecast", d.val_fraction,
                                  d.test_fraction)
    if d.loss_positions > d.window:
      raise UserError(f"config.forecast.loss_positions={d.loss_positions} "
                      f"must be <= config.forecast.window={d.window}.")
    series_lib.check_columns(d)
    if d.auto_difference and d.difference:
      raise UserError("config.forecast.difference=True forces differencing "
                      "and config.forecast.auto_difference=True decides it "
                      "from the train split; set only one.")
    defaults = base_config.get_config().forecast
    if d.arima_search:
      for key in ("arima_order", "arima_seasonal_order", "arima_trend"):
        if tuple(np.atleast_1d(d[key])) != tuple(np.atleast_1d(
            defaults[key])):
          raise UserError(
              f"config.forecast.{key}={d[key]!r} is unused with "
              "config.forecast.arima_search=True, which chooses the order "
              f"by AIC; keep its default {defaults[key]!r} or set "
              "arima_search=False.")

  def __init__(self, config, scaler: series_lib.Scaler | None = None,
               input_scalers: tuple[series_lib.Scaler, ...] | None = None,
               decisions: dict[str, Any] | None = None):
    """`scaler`, `input_scalers`, `decisions`: saved ones (inference)
    instead of refitting or deciding again on train; input_scalers None
    with a saved `scaler`: the target is the only input."""
    self.config = config
    d = config.forecast
    self.series = series_lib.load(d)
    self.values = self.series.values
    self.split = series_lib.split(len(self.values), d.val_fraction,
                                  d.test_fraction)
    self.decisions = (decisions if decisions is not None
                      else self._decide())
    self.difference = self.decisions.get("difference", {}).get(
        "difference", d.difference)
    self.season = self.decisions.get("season", {}).get("season", d.season)
    window = self.decisions.get("window", {})
    self.window = window.get("window", d.window)
    self.loss_positions = window.get("loss_positions", d.loss_positions)
    self.scaler = scaler or series_lib.Scaler.fit(
        self.values, self.split.train_end, self.difference)
    self.z = self.scaler.transform(self.values)  # [N] normalised target
    if input_scalers is None:
      input_scalers = series_lib.fit_input_scalers(
          self.series, self.split.train_end, self.scaler)
    self.input_scalers = tuple(input_scalers)
    # [N, F] normalised model inputs.
    self.z_inputs = series_lib.transform_inputs(self.series,
                                                self.input_scalers)
    # Train windows start in [first, last_start]: inputs and targets inside
    # the train split.
    self.first_start = self.scaler.first
    self.last_start = self.split.train_end - self.window - d.horizon
    if self.last_start < self.first_start:
      raise UserError(
          f"The train split of {self.series.name!r} has "
          f"{self.split.train_end} points; forecast.window={self.window} plus "
          f"forecast.horizon={d.horizon} need at least "
          f"{self.window + d.horizon + self.scaler.first + 1}. Shorten the "
          "window or lower forecast.val_fraction / forecast.test_fraction.")
    for name in ("val", "test"):
      start, end = self.split.bounds(name)
      if end <= start:
        raise UserError(f"The {name} split of {self.series.name!r} is empty "
                        f"({len(self.values)} points, forecast.val_fraction="
                        f"{d.val_fraction}, forecast.test_fraction="
                        f"{d.test_fraction}); both must hold points.")
    if self.season >= self.split.train_end:
      raise UserError(f"forecast.season={self.season} must be shorter than the "
                      f"train split ({self.split.train_end} points).")
    self.mase_scale = series_lib.naive_scale(
        self.values[:self.split.train_end], config.forecast.mase_lag)
    e = config.forecast
    series_lib.arima_model(self.values[:self.split.train_end], e.arima_order,
                           e.arima_seasonal_order, e.arima_trend)
    self.model = self.create_model(output_size=d.horizon)
    self._baselines: dict[str, dict[str, float]] = {}
    self._arima = None  # (train results, one-step forecasts [N - train_end])
    self._arima_spec = None  # {"order", "seasonal_order", "trend", ...}

  def _decide(self) -> dict[str, Any]:
    """The decisions forecast.auto_difference, detect_season and
    window_fraction ask for, from the train split only; {} when none is
    asked for (older runs' metadata stays as it was)."""
    d = self.config.forecast
    train = self.values[:self.split.train_end]
    out = {}
    difference = d.difference
    if d.auto_difference:
      out["difference"] = series_lib.decide_difference(train)
      difference = out["difference"]["difference"]
      logging.info("forecast.auto_difference: %s first differences (train "
                   "split, %d points: ADF p=%.3g, KPSS p=%.3g; rule %s).",
                   "modelling" if difference else "not modelling",
                   len(train), out["difference"]["adf_pvalue"],
                   out["difference"]["kpss_pvalue"],
                   out["difference"]["rule"])
    if d.detect_season:
      if d.season:
        out["season"] = {"season": d.season, "given": True}
        logging.info("forecast.detect_season: season %d as given "
                     "(forecast.season).", d.season)
      else:
        out["season"] = series_lib.detect_season(train, difference)
        logging.info("forecast.detect_season: season %d from the train "
                     "split's autocorrelation%s (peaks [lag, acf]: %s; "
                     "threshold %.3g).", out["season"]["season"],
                     " of first differences" if difference else "",
                     out["season"]["peaks"], out["season"]["threshold"])
    if d.window_fraction:
      out["window"] = series_lib.adapt_window(
          d.window, d.loss_positions, len(train), d.window_fraction)
      logging.info("forecast.window_fraction=%g: window %d, loss_positions "
                   "%d (configured %d and %d; train split %d points).",
                   d.window_fraction, out["window"]["window"],
                   out["window"]["loss_positions"], d.window,
                   d.loss_positions, len(train))
    return out

  @property
  def arima_spec(self) -> dict[str, Any]:
    """The ARIMA baseline's order, seasonal order and trend: the config's,
    or with forecast.arima_search those chosen by AIC on the train split
    (searched once, on first use)."""
    if self._arima_spec is None:
      e = self.config.forecast
      if e.arima_search:
        spec = series_lib.select_arima(self.values[:self.split.train_end],
                                       self.difference, self.season)
        logging.info("forecast.arima_search: ARIMA%s x %s trend %r (AIC "
                     "%.6g on the last %d train points, %d candidates%s).",
                     tuple(spec["order"]), tuple(spec["seasonal_order"]),
                     spec["trend"], spec["search_aic"], spec["search_points"],
                     spec["candidates"],
                     "; seasonal terms skipped, season > "
                     f"{series_lib.ARIMA_MAX_SEASON}"
                     if spec["seasonal_skipped"] else "")
        self._arima_spec = {**spec, "searched": True}
      else:
        self._arima_spec = {"order": list(e.arima_order),
                            "seasonal_order": list(e.arima_seasonal_order),
                            "trend": e.arima_trend, "searched": False}
    return self._arima_spec

  # -- Training. --------------------------------------------------------------

  def init_inputs(self):
    return (np.zeros((1, self.window,
                      self.z_inputs.shape[1]), np.float32),)

  def tokens_per_batch(self):
    return self.config.train.batch_size * self.window

  def train_batch(self, step, rows=None):
    if step < 0:
      raise UserError(f"Training step must be >= 0, got {step}.")
    rng = np.random.default_rng(
        [self.config.seed, series_lib.TRAIN_STREAM, step])
    starts = rng.integers(self.first_start, self.last_start + 1,
                          self.config.train.batch_size)[rows or slice(None)]
    return series_lib.train_windows(self.z, starts, self.window,
                                    self.config.forecast.horizon,
                                    self.z_inputs)

  def loss_fn(self, params, batch, rng):
    return forecast_loss(self.model, params, batch, rng,
                         self.loss_positions)

  # -- Evaluation. ------------------------------------------------------------

  @property
  def eval_splits(self):
    return ("val", "test")

  def predict_normalised(self, params, targets: np.ndarray) -> np.ndarray:
    """Rolling-origin forecasts [K, H] (normalised) for target indices
    `targets` [K], each from the window before it; in eval.batch_size
    chunks, the last padded so that one program serves every chunk."""
    size = min(self.config.eval.batch_size, len(targets))
    out = []
    for begin in range(0, len(targets), size):
      chunk = targets[begin:begin + size]
      padded = np.pad(chunk, (0, size - len(chunk)), mode="edge")
      inputs = series_lib.origin_windows(self.z_inputs, padded, self.window)
      out.append(np.asarray(_last_outputs(self.model, params,
                                          inputs))[:len(chunk)])
    return np.concatenate(out)

  def baseline_forecasts(self, split: str) -> dict[str, np.ndarray]:
    """The truth, time labels and each baseline's one-step forecasts of
    every point of `split`, original units."""
    start, end = self.split.bounds(split)
    out = {"time": self.series.time[start:end],
           "truth": self.values[start:end],
           "naive": series_lib.naive_forecast(self.values, start, end)}
    if self.season:
      out["snaive"] = series_lib.naive_forecast(self.values, start, end,
                                                self.season)
    out["arima"] = self.arima_forecasts()[start - self.split.train_end:
                                          end - self.split.train_end]
    if self.series.clean is not None:
      out["clean"] = self.series.clean[start:end]
    return out

  def forecasts(self, params, split: str) -> dict[str, np.ndarray]:
    """`baseline_forecasts` plus the model's: "model" [K] (one step),
    "model_all" [K, H] (original units), "z_pred" [K, H] (normalised)."""
    start, end = self.split.bounds(split)
    targets = np.arange(start, end)
    z_pred = self.predict_normalised(params, targets)
    levels = self.scaler.to_levels(z_pred, self.values[targets - 1])
    return {**self.baseline_forecasts(split), "model": levels[:, 0],
            "model_all": levels, "z_pred": z_pred}

  def evaluate(self, params, split):
    f = self.forecasts(params, split)
    start, end = self.split.bounds(split)
    horizon = self.config.forecast.horizon
    metrics = {"loss": float(np.mean(np.square(
        f["z_pred"][:, 0] - self.z[start:end])))}
    metrics.update(series_lib.errors(f["model"], f["truth"],
                                     self.mase_scale))
    if "clean" in f:
      metrics["rmse_clean"] = _rmse(f["model"], f["clean"])
    if horizon > 1:
      # Origins whose H-th value is still inside the split.
      k = end - start - horizon + 1
      if k > 0:
        truth = self.values[start + horizon - 1:end]
        metrics[f"mae_h{horizon}"] = float(np.mean(np.abs(
            f["model_all"][:k, horizon - 1] - truth)))
        metrics[f"naive_mae_h{horizon}"] = float(np.mean(np.abs(
            self.values[start - 1:start - 1 + k] - truth)))
    metrics.update(self.baseline_metrics(split))
    metrics["mae_ratio_arima"] = metrics["mae"] / metrics["arima_mae"]
    metrics["forecasts"] = float(end - start)
    return metrics

  def baseline_metrics(self, split: str) -> dict[str, float]:
    """Baseline errors on `split` (computed once: no model involved)."""
    if split not in self._baselines:
      f = self.baseline_forecasts(split)
      metrics = {}
      for name in ("naive", "snaive", "arima"):
        if name in f:
          metrics.update(series_lib.errors(f[name], f["truth"],
                                           self.mase_scale, f"{name}_"))
          if "clean" in f:
            metrics[f"{name}_rmse_clean"] = _rmse(f[name], f["clean"])
      self._baselines[split] = metrics
    return dict(self._baselines[split])

  def arima_results(self):
    """The ARIMA fitted on the train split (fitted once, on first use)."""
    self.arima_forecasts()
    return self._arima[0]

  def arima_forecasts(self) -> np.ndarray:
    """ARIMA one-step forecasts of values[train_end:] [N - train_end]."""
    if self._arima is None:
      spec = self.arima_spec
      results = series_lib.fit_arima(
          self.values[:self.split.train_end], spec["order"],
          spec["seasonal_order"], spec["trend"])
      for warning in results.fit_warnings:
        logging.warning("ARIMA fit: %s", warning)
      forecasts, _ = series_lib.arima_one_step(
          results, self.values, self.split.train_end, len(self.values))
      self._arima = (results, forecasts)
    return self._arima[1]

  # -- Files. -----------------------------------------------------------------

  def metadata(self) -> dict[str, Any]:
    """What predict needs besides the config: the target's scaling and,
    with input columns other than the target alone, each input's
    ("inputs"; absent for a univariate run, whose file stays as before)."""
    meta = {"series": self.series.name, "points": len(self.values),
            "train_end": self.split.train_end, "val_end": self.split.val_end,
            "scaler": self.scaler.to_json()}
    if self.series.inputs is not None:
      meta["inputs"] = [{"column": name, **scaler.to_json()}
                        for name, scaler in zip(self.series.input_names,
                                                self.input_scalers)]
    if self.decisions:
      meta["decisions"] = self.decisions
    return meta

  def save_metadata(self, workdir):
    # Process 0 writes it (a resumed run keeps it); every process checks it.
    path = pathlib.Path(workdir) / SCALER_FILE
    meta = self.metadata()
    saved = metrics_lib.run_file(
        path, functools.partial(metrics_lib.write_json, obj=meta),
        metrics_lib.read_json)
    if saved != meta:
      raise UserError(f"{path} ({saved}) does not match this task's data "
                      f"({meta}); use a new workdir.")

  def write_reports(self, params, workdir):
    """forecast_test.png (test truth vs one-step forecasts) and
    forecast_test.json (the same numbers, the validation metrics, the
    decisions and the ARIMA fit), for the checkpoint chosen on the
    validation loss (<workdir>/best/), or `params` (the newest) where the
    run has no best checkpoint."""
    workdir = pathlib.Path(workdir)
    step, best = self.best_params(workdir)
    chosen = {"step": step, "chosen_on": "val loss"} if best else {
        "step": None, "chosen_on": "newest parameters (no best/)"}
    params = best if best is not None else params
    f = self.forecasts(params, "test")
    metrics = self.evaluate(params, "test")
    val_metrics = self.evaluate(params, "val")
    if best is not None:
      logging.info("Best checkpoint (step %d, chosen on val loss %.4g): "
                   "test MAE %.4g (naive %.4g, ARIMA %.4g).", step,
                   val_metrics["loss"], metrics["mae"],
                   metrics["naive_mae"], metrics["arima_mae"])
    arima = self.arima_results()
    spec = self.arima_spec
    record = {
        "series": self.series.name,
        "checkpoint": chosen,
        "metrics": metrics,
        "val_metrics": val_metrics,
        "decisions": {**self.decisions, "used": {
            "difference": self.difference, "season": self.season,
            "window": self.window, "loss_positions": self.loss_positions}},
        "arima": {**spec,
                  "params": dict(zip(arima.param_names,
                                     map(float, arima.params))),
                  "aic": float(arima.aic), "train_points": int(arima.nobs),
                  "fit_warnings": arima.fit_warnings},
        "forecasts": {k: np.asarray(v).tolist() for k, v in f.items()
                      if k not in ("model_all", "z_pred")},
    }
    metrics_lib.write_text(workdir / FORECASTS_FILE,
                           json.dumps(record) + "\n")
    return [plot_forecasts(workdir / PLOT_FILE, f, metrics, self.series),
            workdir / FORECASTS_FILE]

  def best_params(self, workdir) -> tuple[int | None, Any]:
    """(step, params) of <workdir>/best/, or (None, None) without one."""
    if not (pathlib.Path(workdir) / rundir.BEST_DIR).is_dir():
      return None, None
    try:
      return rundir.restore_best_params(self.model, self.init_inputs(),
                                        workdir)
    except CheckpointError as e:
      logging.warning("No usable best checkpoint in %s: %s", workdir, e)
      return None, None

  # -- Inference past the end of the series. ---------------------------------

  def forecast_future(self, params, steps: int) -> tuple[np.ndarray, str]:
    """The next `steps` values after the series' end, original units, and
    the method: "direct" (steps <= forecast.horizon: one pass, its outputs) or
    "recursive" (one-step forecasts fed back as inputs)."""
    if steps < 1:
      raise UserError(f"steps={steps} must be >= 1.")
    d = self.config.forecast
    last = self.values[-1]
    if steps <= d.horizon:
      window = self.z_inputs[-self.window:].astype(np.float32)  # [W, F]
      z = np.asarray(_last_outputs(self.model, params,
                                   window[None]))[0, :steps]
      return self.scaler.to_levels(z, last), "direct"
    if self.series.input_columns != (self.series.column,):
      unknown = [c for c in self.series.input_columns
                 if c != self.series.column]
      raise UserError(
          f"steps={steps} > forecast.horizon={d.horizon} needs a recursive "
          "roll-out, which feeds each forecast back as the next input; this "
          f"run also reads {', '.join(map(repr, unknown))} (forecast."
          f"input_columns={self.series.input_columns!r}), whose future "
          "values it does not forecast. Ask for steps <= "
          f"{d.horizon}, or train with forecast.horizon >= {steps} for a "
          "direct forecast.")
    window = self.z[-self.window:].astype(np.float32)
    z_future = []
    for _ in range(steps):
      z_next = float(np.asarray(_last_outputs(self.model, params,
                                              window[None, :, None]))[0, 0])
      z_future.append(z_next)
      window = np.append(window[1:], np.float32(z_next))
    return self.scaler.to_levels(np.asarray(z_future), last), "recursive"


def load_for_inference(workdir: pathlib.Path, config=None,
                       checkpoint_name: str = "best"):
  """(task, step, params, checkpoint name) of a trained forecasting run: the
  series is reloaded from its config and scaled with the run's saved
  statistics; the weights are the best checkpoint's (chosen on validation;
  the newest if there is none yet) or, with "latest", the newest."""
  rundir.check_checkpoint_choice(checkpoint_name)
  workdir = pathlib.Path(workdir)
  config, meta = rundir.load_task_run(workdir, "forecast", "forecasting",
                                      SCALER_FILE, config)
  inputs = meta.get("inputs")  # absent: the target is the only input
  input_scalers = None
  if inputs is not None:
    names = tuple(i["column"] for i in inputs)
    if names != tuple(config.forecast.input_columns):
      raise UserError(f"{workdir / SCALER_FILE} scales input columns "
                      f"{names!r}, but the run's config reads "
                      f"{tuple(config.forecast.input_columns)!r}.")
    input_scalers = tuple(series_lib.Scaler.from_json(i) for i in inputs)
  task = ForecastTask(config, series_lib.Scaler.from_json(meta["scaler"]),
                      input_scalers, meta.get("decisions", {}))
  if len(task.values) != meta["points"]:
    logging.warning("The series now has %d points (%d at training); "
                    "forecasting after its current end.", len(task.values),
                    meta["points"])
  step, params, name = rundir.restore_chosen_params(
      task.model, task.init_inputs(), workdir, checkpoint_name)
  return task, step, params, name


def plot_forecasts(path: pathlib.Path, f: dict[str, np.ndarray],
                   metrics: dict[str, float], series: series_lib.Series,
                   ) -> pathlib.Path:
  """Truth vs one-step forecasts (model, ARIMA) over the test split."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(10, 4))
  ax.plot(f["time"], f["truth"], color="black", lw=1.2, label="truth")
  if "clean" in f:
    ax.plot(f["time"], f["clean"], color="grey", lw=1, ls=":",
            label="noise-free")
  ax.plot(f["time"], f["model"], color="tab:blue", lw=1,
          label=f"model (MAE {metrics['mae']:.4g})")
  ax.plot(f["time"], f["arima"], color="tab:orange", lw=1, ls="--",
          label=f"ARIMA (MAE {metrics['arima_mae']:.4g})")
  ax.set_title(f"{series.name}: one-step forecasts over the test split "
               f"(naive MAE {metrics['naive_mae']:.4g})")
  ax.set_xlabel("time")
  ax.set_ylabel(series.unit or "value")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def _rmse(a, b) -> float:
  return float(np.sqrt(np.mean(np.square(np.asarray(a) - np.asarray(b)))))
