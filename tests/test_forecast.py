"""Time-series forecasting: sources, missing values, scaling without leakage,
baselines on series with known errors, training, evaluation and predict."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from rnnlab import checkpoint
from rnnlab import config_check
from rnnlab import predict
from rnnlab import rundir
from rnnlab import train
from rnnlab.data import series as series_lib
from rnnlab.errors import DataError, UserError
from rnnlab.tasks import forecast
from tests.helpers import ROOT
from tests.helpers import tiny_config
from tests.helpers import tiny_forecast_config


def write_csv(path, rows, header="date,value,note"):
  path.write_text(header + "\n" + "\n".join(rows) + "\n")
  return path


# -- Sources and missing values. ----------------------------------------------


def test_sine_is_seeded_noisy_and_keeps_the_clean_series():
  c = tiny_config("gru_forecast_sine")  # 2,000 points
  s = series_lib.load(c.forecast)
  t = np.arange(2000)
  np.testing.assert_allclose(s.clean, np.sin(t / 10))
  noise = s.values - s.clean
  assert np.abs(noise).max() <= 0.2 and np.abs(noise).max() > 0.19
  np.testing.assert_array_equal(s.values, series_lib.load(c.forecast).values)
  c.forecast.noise_seed = 1
  assert not np.array_equal(s.values, series_lib.load(c.forecast).values)


def test_co2_missing_weeks_error_or_interpolate():
  # gru_forecast_co2 interpolates its missing weeks; "error" is the default.
  c = tiny_config("gru_forecast_co2", forecast__missing="error")
  with pytest.raises(DataError, match=r"59 missing value\(s\) of 2284.*"
                     r"index 6 .*'error', 'interpolate'"):
    series_lib.load(c.forecast)
  c.forecast.missing = "interpolate"
  s = series_lib.load(c.forecast)
  raw = series_lib.co2(c.forecast).values
  assert len(s.values) == 2284 and np.isfinite(s.values).all()
  # Week 6 is missing, weeks 5 and 7 are not: their midpoint.
  assert np.isnan(raw[6]) and np.isfinite(raw[[5, 7]]).all()
  assert s.values[6] == pytest.approx((raw[5] + raw[7]) / 2)
  np.testing.assert_array_equal(s.values[np.isfinite(raw)],
                                raw[np.isfinite(raw)])
  assert 1958 < s.time[0] < s.time[-1] < 2002
  c.forecast.missing = "drop"
  with pytest.raises(UserError, match="Valid choices: 'error', 'interpolate'"):
    series_lib.load(c.forecast)


def test_sunspots_yearly():
  s = series_lib.load(tiny_config("lstm_forecast_sunspots").forecast)
  assert len(s.values) == 309 and s.time[0] == 1700 and s.time[-1] == 2008
  assert s.time_step == 1.0


def test_csv_column_missing_cells_and_errors(tmp_path):
  path = write_csv(tmp_path / "s.csv", ["2020-01-01,1.5,a", "2020-01-02,,b",
                                        "2020-01-03,3.5,c"])
  c = tiny_forecast_config(forecast__series="csv", forecast__csv=str(path),
                           forecast__column="value")
  with pytest.raises(DataError, match=r"1 missing value\(s\) of 3.*index 1"):
    series_lib.load(c.forecast)
  c.forecast.missing = "interpolate"
  np.testing.assert_allclose(series_lib.load(c.forecast).values, [1.5, 2.5, 3.5])
  c.forecast.column = "price"
  with pytest.raises(DataError, match=r"forecast.column='price' is not a column"
                     r".*Valid choices: 'date', 'value', 'note'"):
    series_lib.load(c.forecast)
  c.forecast.column = "note"
  with pytest.raises(DataError, match=r"3 non-numeric value\(s\) \(row 2: "
                     "'a'"):
    series_lib.load(c.forecast)
  c.forecast.csv = str(tmp_path / "nope.csv")
  with pytest.raises(DataError, match="nope.csv.*no such file"):
    series_lib.load(c.forecast)
  c.forecast.series = "csvv"
  with pytest.raises(UserError, match="Valid choices: 'co2', 'csv', 'msft', "
                     "'sine', 'sunspots'"):
    series_lib.load(c.forecast)


# -- Split and scaling. -------------------------------------------------------


def test_split_is_chronological():
  s = series_lib.split(100, 0.15, 0.15)
  assert (s.train_end, s.val_end, s.n) == (70, 85, 100)
  assert s.bounds("test") == (85, 100)
  with pytest.raises(UserError, match="sum to less than 1"):
    series_lib.split(100, 0.5, 0.5)


@pytest.mark.parametrize("difference", [False, True])
def test_scaling_uses_the_train_split_only(tmp_path, difference):
  rng = np.random.default_rng(0)
  values = np.cumsum(rng.normal(size=200)) + 50
  scaler = series_lib.Scaler.fit(values, 140, difference)
  train = np.diff(values[:140]) if difference else values[:140]
  assert scaler.mean == pytest.approx(train.mean())
  assert scaler.std == pytest.approx(train.std())
  changed = values.copy()
  changed[140:] += 1000.0
  assert series_lib.Scaler.fit(changed, 140, difference) == scaler
  # Forecasting the true next values in model units gives back the truth.
  z = scaler.transform(values)
  t = np.arange(150, 160)
  np.testing.assert_allclose(scaler.to_levels(z[t, None], values[t - 1])[:, 0],
                             values[t])

  # Through the task: a CSV whose later values change keeps its scaling.
  rows = [f"{i},{float(v)!r},x" for i, v in enumerate(values)]
  path = write_csv(tmp_path / "a.csv", rows)
  c = tiny_forecast_config(forecast__series="csv", forecast__csv=str(path),
                           forecast__column="value", forecast__difference=difference,
                           forecast__val_fraction=0.15, forecast__test_fraction=0.15)
  task = forecast.ForecastTask(c)
  assert task.split.train_end == 140 and task.scaler == scaler
  write_csv(path, [f"{i},{float(v)!r},x" for i, v in enumerate(changed)])
  assert forecast.ForecastTask(c).scaler == scaler


def test_windows_never_read_past_their_origin():
  z = np.arange(100, dtype=np.float64)
  windows = series_lib.origin_windows(z, np.array([40, 90]), 32)
  np.testing.assert_array_equal(windows[:, :, 0], [z[8:40], z[58:90]])
  batch = series_lib.train_windows(z, np.array([3]), 4, 2)
  np.testing.assert_array_equal(batch["inputs"][0, :, 0], [3, 4, 5, 6])
  np.testing.assert_array_equal(batch["targets"][0],
                                [[4, 5], [5, 6], [6, 7], [7, 8]])


# -- Baselines on series with known errors. -----------------------------------


def test_naive_and_seasonal_naive_on_known_series():
  line = 2.0 * np.arange(100) + 1  # naive error: exactly the slope, 2
  scale = series_lib.naive_scale(line[:70])
  assert scale == 2.0
  naive = series_lib.naive_forecast(line, 85, 100)
  m = series_lib.errors(naive, line[85:], scale, "naive_")
  assert m == {"naive_mae": 2.0, "naive_rmse": 2.0, "naive_mase": 1.0}
  periodic = np.tile([0.0, 1.0, 4.0, 1.0, 0.0], 20)  # period 5
  seasonal = series_lib.naive_forecast(periodic, 85, 100, lag=5)
  np.testing.assert_array_equal(seasonal, periodic[85:])
  last = series_lib.naive_forecast(periodic, 85, 100)
  assert series_lib.errors(last, periodic[85:], 1.0)["mae"] == pytest.approx(
      np.mean(np.abs(np.diff(periodic[84:]))))


def test_arima_is_fitted_on_train_and_forecasts_one_step():
  rng = np.random.default_rng(0)
  values = np.zeros(300)
  for t in range(1, 300):  # AR(1), phi = 0.8
    values[t] = 0.8 * values[t - 1] + rng.normal()
  results = series_lib.fit_arima(values[:200], (1, 0, 0), trend="n")
  assert results.nobs == 200
  changed = values.copy()
  changed[200:] *= 10
  assert np.allclose(series_lib.fit_arima(changed[:200], (1, 0, 0),
                                          trend="n").params, results.params)
  phi = results.params[0]
  assert phi == pytest.approx(0.8, abs=0.1)
  forecasts, extended = series_lib.arima_one_step(results, values, 250, 300)
  # Kept parameters (no refit), and AR(1)'s one-step forecast phi * x_{t-1}.
  np.testing.assert_allclose(extended.params, results.params)
  np.testing.assert_allclose(forecasts, phi * values[249:299], rtol=1e-6)
  with pytest.raises(UserError, match="start after the train split"):
    series_lib.arima_one_step(results, values, 150, 300)


# -- Training, evaluation and predict. ----------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("forecast")
  results = train.train_and_evaluate(tiny_forecast_config(), workdir)
  return workdir, results


def test_training_lowers_the_loss_and_evaluation_reports_baselines(trained):
  workdir, results = trained
  records = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text(
  ).splitlines()]
  losses = [r["loss"] for r in records if r["split"] == "train"]
  assert losses[-1] < 0.5 * losses[0]
  test = results["eval"]["test"]
  for key in ("loss", "mae", "rmse", "mase", "rmse_clean", "naive_mae",
              "naive_rmse", "naive_mase", "snaive_mae", "arima_mae",
              "arima_rmse", "arima_mase", "mae_ratio_arima"):
    assert np.isfinite(test[key]), key
  assert test["mae_ratio_arima"] == pytest.approx(test["mae"] /
                                                  test["arima_mae"])
  assert test["forecasts"] == 60  # every point of the 15% test split
  assert test["mae"] < test["naive_mae"]
  assert (workdir / forecast.PLOT_FILE).stat().st_size > 0
  saved = json.loads((workdir / forecast.FORECASTS_FILE).read_text())
  assert saved["arima"]["train_points"] == 280 and len(
      saved["forecasts"]["model"]) == 60


def test_predict_command_on_the_trained_workdir(trained, tmp_path):
  workdir, _ = trained
  out = tmp_path / "future.png"
  env = {**os.environ, "RNNLAB_JAX_CACHE": str(ROOT / ".pytest_cache" /
                                                "jax")}
  proc = subprocess.run(
      [sys.executable, "-m", "rnnlab.predict", f"--workdir={workdir}",
       "--steps=5", f"--output={out}"], capture_output=True, text=True,
      cwd=ROOT, env=env, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  record = json.loads(proc.stdout)
  assert record["method"] == "recursive" and record["steps"] == 5
  assert [f["time"] for f in record["forecast"]] == [400, 401, 402, 403, 404]
  assert all(abs(f["value"]) < 2 for f in record["forecast"])
  assert out.stat().st_size > 0


def test_predict_uses_the_checkpoint_chosen_on_validation(trained, tmp_path):
  # A copy of the run whose best/ holds other weights at an earlier step:
  # predict reads best/ by default and the newest with "latest".
  workdir = tmp_path / "run"
  shutil.copytree(trained[0], workdir)
  shutil.rmtree(workdir / rundir.BEST_DIR, ignore_errors=True)
  task, last_step, params, _ = forecast.load_for_inference(workdir,
                                                           checkpoint_name="latest")
  shifted = jax.tree.map(lambda p: p * 0.5, params)
  best = checkpoint.Checkpointer(workdir / rundir.BEST_DIR, 1)
  best.save(7, shifted, shifted, {"step": 7})  # params are all it reads
  best.close()
  chosen = predict.predict(workdir, 3, tmp_path / "best.png")
  newest = predict.predict(workdir, 3, tmp_path / "latest.png",
                           checkpoint_name="latest")
  assert (chosen["checkpoint"], chosen["checkpoint_step"]) == ("best", 7)
  assert (newest["checkpoint"], newest["checkpoint_step"]) == (
      "latest", last_step) and last_step == 150
  expected, _ = task.forecast_future(shifted, 3)
  np.testing.assert_allclose([f["value"] for f in chosen["forecast"]],
                             expected, rtol=1e-5, atol=1e-6)
  assert [f["value"] for f in chosen["forecast"]] != [
      f["value"] for f in newest["forecast"]]
  with pytest.raises(UserError, match="Unknown checkpoint 'last'.*'best', "
                     "'latest'"):
    predict.predict(workdir, 3, checkpoint_name="last")


def test_direct_horizon_and_differencing_without_training():
  c = tiny_forecast_config(forecast__horizon=3, forecast__difference=True)
  task = forecast.ForecastTask(c)
  params = train.init_params(task.model, task.init_inputs(), 0)
  batch = task.train_batch(5)
  assert batch["inputs"].shape == (8, 32, 1)
  assert batch["targets"].shape == (8, 32, 3)
  np.testing.assert_array_equal(batch["inputs"],
                                task.train_batch(5)["inputs"])
  metrics = task.evaluate(params, "val")
  assert {"mae", "mae_h3", "naive_mae_h3", "arima_mae"} <= set(metrics)
  values, method = task.forecast_future(params, 3)
  assert method == "direct" and values.shape == (3,)
  values, method = task.forecast_future(params, 4)
  assert method == "recursive" and values.shape == (4,)


def test_config_errors_name_the_key():
  with pytest.raises(UserError, match="needs model.name='sequence'"):
    config_check.validate(tiny_forecast_config(model__name="rnn_lm"))
  with pytest.raises(UserError, match="forecast.window=400 plus"):
    forecast.ForecastTask(tiny_forecast_config(forecast__window=400))
  with pytest.raises(UserError, match=r"Unknown arima trend 'x' "
                     r"\(config.forecast.arima_trend\).*'c', 'ct', 'n'"):
    config_check.validate(tiny_forecast_config(forecast__arima_trend="x"))
  with pytest.raises(UserError, match=r"config.forecast.arima_order="
                     r"\(-1, 0, 0\) must be a tuple of 3 integers >= 0"):
    config_check.validate(tiny_forecast_config(
        forecast__arima_order=(-1, 0, 0)))
  with pytest.raises(UserError, match=r"config.forecast.loss_positions=9 "
                     r"must be <= config.forecast.window=8"):
    config_check.validate(tiny_forecast_config(forecast__window=8,
                                               forecast__loss_positions=9))
