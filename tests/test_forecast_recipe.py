"""The CSV recipe's decisions (configs/gru_forecast_csv.py), each taken from
the train split only: differencing, the season, the window, the ARIMA
baseline's order."""
from __future__ import annotations

import numpy as np
import pytest

from rnnlab import config_check
from rnnlab.data import series as series_lib
from rnnlab.errors import UserError
from rnnlab.tasks import forecast
from tests.helpers import tiny_config


def _random_walk_with_drift(n=400, seed=0):
  rng = np.random.default_rng(seed)
  return 10 + np.cumsum(0.3 + rng.normal(size=n))


def _ar1(n=400, phi=0.7, seed=0):
  rng = np.random.default_rng(seed)
  e, x = rng.normal(size=n), np.zeros(n)
  for t in range(1, n):
    x[t] = phi * x[t - 1] + e[t]
  return x


def _periodic(n=400, period=12, seed=0):
  rng = np.random.default_rng(seed)
  t = np.arange(n)
  return 5 * np.sin(2 * np.pi * t / period) + rng.normal(size=n)


def _csv_config(tmp_path, values, name="series.csv", **overrides):
  path = tmp_path / name
  path.write_text("value\n" + "".join(f"{float(v)!r}\n" for v in values))
  return tiny_config("gru_forecast_csv", forecast__csv=str(path),
                     forecast__column="value", **overrides)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_random_walk_with_drift_is_differenced_an_ar1_is_not(seed):
  walk = series_lib.decide_difference(_random_walk_with_drift(seed=seed)[:280])
  assert walk["difference"] and walk["adf_pvalue"] > 0.05
  ar1 = series_lib.decide_difference(_ar1(seed=seed)[:280])
  assert not ar1["difference"] and ar1["adf_pvalue"] < 0.05


@pytest.mark.parametrize("period", [7, 12, 24])
def test_a_clear_period_is_detected_as_the_season(period):
  found = series_lib.detect_season(_periodic(period=period)[:280], False)
  assert found["season"] == period
  # Differenced first when the series trends: the trend hides the peak.
  trending = _periodic(period=period)[:280] + 0.5 * np.arange(280)
  assert series_lib.detect_season(trending, True)["season"] == period


def test_no_season_in_a_random_walk_or_an_ar1():
  assert series_lib.detect_season(_random_walk_with_drift()[:280],
                                  True)["season"] == 0
  assert series_lib.detect_season(_ar1()[:280], False)["season"] == 0


def test_the_task_logs_its_decisions_into_the_metadata(tmp_path):
  values = _periodic(n=200) + 0.4 * np.arange(200)
  task = forecast.ForecastTask(_csv_config(tmp_path, values))
  meta = task.metadata()["decisions"]
  assert task.difference and meta["difference"]["difference"]
  assert task.season == 12 == meta["season"]["season"]
  assert task.scaler.difference
  # A season the user gives wins over the detected one.
  given = forecast.ForecastTask(_csv_config(tmp_path, values,
                                            forecast__season=5))
  assert given.season == 5 and given.decisions["season"]["given"]


def test_the_window_adapts_to_a_short_series(tmp_path):
  # runlocal keeps window 32, loss_positions 32 (of 64 and 32).
  long = forecast.ForecastTask(_csv_config(tmp_path, _ar1(n=400)))
  assert (long.window, long.loss_positions) == (32, 32)
  short = forecast.ForecastTask(_csv_config(tmp_path, _ar1(n=60)))
  train_points = short.split.train_end  # 42
  assert short.window == int(0.25 * train_points) == 10
  assert short.loss_positions == 10
  assert short.init_inputs()[0].shape == (1, 10, 1)
  assert short.train_batch(0)["inputs"].shape[1] == 10
  assert short.decisions["window"]["adapted"]
  assert series_lib.adapt_window(64, 32, 1000, 0.25) == {
      "window": 64, "loss_positions": 32, "adapted": False,
      "configured_window": 64, "train_points": 1000, "fraction": 0.25}
  assert series_lib.adapt_window(64, 32, 100, 0.0)["window"] == 64


def test_the_arima_order_is_chosen_on_the_train_split_only(tmp_path):
  values = _ar1(n=120, phi=0.8)
  task = forecast.ForecastTask(_csv_config(tmp_path, values, "a.csv"))
  changed = values.copy()
  changed[task.split.val_end:] = 1000 + 50 * np.sin(
      np.arange(len(values) - task.split.val_end))
  other = forecast.ForecastTask(_csv_config(tmp_path, changed, "b.csv"))
  assert task.arima_spec["searched"]
  assert task.arima_spec == other.arima_spec
  assert task.arima_spec["order"][1] == 0  # levels: not differenced


def test_conflicting_keys_are_refused(tmp_path):
  config = _csv_config(tmp_path, _ar1(n=100), forecast__difference=True)
  with pytest.raises(UserError, match="auto_difference"):
    config_check.validate(config)
  config = _csv_config(tmp_path, _ar1(n=100), forecast__arima_order=(2, 0, 0))
  with pytest.raises(UserError, match="arima_search"):
    config_check.validate(config)
