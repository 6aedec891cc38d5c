"""Forecasting from several input columns: train-only scaling per column,
the CSV path's columns, dates and errors, a small training run with its
saved scaling, and the MSFT series."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rnnlab import base_config
from rnnlab import config_check
from rnnlab import train
from rnnlab.data import series as series_lib
from rnnlab.errors import DataError, UserError
from rnnlab.tasks import forecast
from tests.helpers import tiny_config
from tests.helpers import tiny_forecast_config

N = 400  # 280 train, 60 validation, 60 test points


def write_frame(path, columns: dict[str, list]):
  names = list(columns)
  rows = zip(*(columns[k] for k in names))
  path.write_text(",".join(names) + "\n" +
                  "\n".join(",".join(map(str, r)) for r in rows) + "\n")
  return path


def two_columns(n: int = N, shift: float = 0.0):
  """y_t = sin(t / 5) and its lead x_t = sin((t + 1) / 5) (+ `shift` after
  the train split): x tells the model the next y."""
  t = np.arange(n)
  x = np.sin((t + 1) / 5.0) + 3.0
  x[int(n * 0.7):] += shift
  return {"t": t.tolist(), "y": np.sin(t / 5.0).tolist(), "x": x.tolist()}


def csv_config(path, **overrides):
  return tiny_forecast_config(forecast__series="csv", forecast__csv=str(path),
                              forecast__column="y",
                              forecast__input_columns=("y", "x"),
                              **overrides)


def csv_forecast(path, **keys):
  """The forecast section for `path`, target y, any other `keys`."""
  c = base_config.get_config().forecast
  c.series, c.csv, c.column = "csv", str(path), "y"
  for k, v in keys.items():
    c[k] = v
  return c


# -- Scaling. -----------------------------------------------------------------


def test_each_input_is_scaled_with_its_own_train_statistics(tmp_path):
  path = write_frame(tmp_path / "a.csv", two_columns())
  task = forecast.ForecastTask(csv_config(path))
  train_end = task.split.train_end
  assert train_end == 280 and task.z_inputs.shape == (N, 2)
  x = np.asarray(two_columns()["x"])
  assert task.input_scalers[0] == task.scaler  # the target keeps its own
  assert task.input_scalers[1].mean == pytest.approx(np.mean(x[:train_end]))
  assert task.input_scalers[1].std == pytest.approx(np.std(x[:train_end]))
  np.testing.assert_allclose(task.z_inputs[:train_end].mean(0), 0, atol=1e-9)
  np.testing.assert_allclose(task.z_inputs[:train_end].std(0), 1)
  # Validation and test rows moved far away: the scaling must not move.
  moved = write_frame(tmp_path / "b.csv", two_columns(shift=1000.0))
  other = forecast.ForecastTask(csv_config(moved))
  assert other.input_scalers == task.input_scalers
  np.testing.assert_array_equal(other.z_inputs[:train_end],
                                task.z_inputs[:train_end])
  assert other.z_inputs[train_end:, 1].min() > 100  # still in train units


def test_differencing_applies_to_the_target_column_only(tmp_path):
  path = write_frame(tmp_path / "a.csv", two_columns())
  task = forecast.ForecastTask(csv_config(path, forecast__difference=True))
  y = np.asarray(two_columns()["y"])
  assert task.input_scalers[0].difference
  assert not task.input_scalers[1].difference
  np.testing.assert_allclose(task.z_inputs[:, 0], task.z)
  assert task.input_scalers[0].mean == pytest.approx(np.mean(np.diff(
      y[:280])))


# -- The CSV path. ------------------------------------------------------------


def test_csv_unknown_columns_list_the_files_columns(tmp_path):
  path = write_frame(tmp_path / "a.csv", two_columns(10))
  with pytest.raises(DataError, match=r"forecast.input_columns='z' is not a "
                     r"column of .*a.csv. Valid choices: 't', 'y', 'x'\."):
    series_lib.load(csv_forecast(path, input_columns=("y", "z")))
  with pytest.raises(DataError, match=r"forecast.date_column='day' is not a "
                     r"column .*Valid choices: 't', 'y', 'x'\."):
    series_lib.load(csv_forecast(path, date_column="day"))


def test_csv_non_numeric_input_column_names_it_and_its_value(tmp_path):
  path = tmp_path / "a.csv"
  path.write_text("y,x\n1.0,2.0\n1.5,n/a?\n2.0,abc\n")
  with pytest.raises(DataError, match=r"Column 'x' of .*a.csv has 2 "
                     r"non-numeric value\(s\) \(row 3: 'n/a\?'"):
    series_lib.load(csv_forecast(path, input_columns=("y", "x")))


def test_csv_missing_input_values_error_or_interpolate(tmp_path):
  path = tmp_path / "a.csv"
  path.write_text("y,x\n1.0,2.0\n1.5,\n2.0,4.0\n")
  with pytest.raises(DataError, match=r"Column 'x' of series 'csv:a.csv:y' "
                     r"has 1 missing value\(s\) of 3, e.g. at index 1 .*"
                     r"'interpolate'.*In the file: row\(s\) 3"):
    series_lib.load(csv_forecast(path, input_columns=("y", "x")))
  s = series_lib.load(csv_forecast(path, input_columns=("y", "x"),
                                   missing="interpolate"))
  np.testing.assert_allclose(s.inputs, [[1.0, 2.0], [1.5, 3.0], [2.0, 4.0]])


def test_csv_date_column_orders_an_unsorted_file(tmp_path):
  path = tmp_path / "a.csv"
  path.write_text("date,y,x\n2020-01-03,3,30\n2020-01-01,1,10\n"
                  "2020-01-04,4,\n2020-01-02,2,20\n")
  keys = dict(input_columns=("y", "x"), date_column="date")
  with pytest.raises(DataError, match=r"index 3 .*In the file: row\(s\) 4 "):
    series_lib.load(csv_forecast(path, **keys))  # the 4th date, file row 4
  s = series_lib.load(csv_forecast(path, missing="interpolate", **keys))
  np.testing.assert_array_equal(s.values, [1, 2, 3, 4])
  np.testing.assert_array_equal(s.inputs[:, 1], [10, 20, 30, 30])
  np.testing.assert_array_equal(s.rows, [3, 5, 2, 4])
  assert np.all(np.diff(s.time) > 0) and s.time[0] == 2020.0
  # Without the date column: file order.
  np.testing.assert_array_equal(
      series_lib.load(csv_forecast(path, missing="interpolate")).values,
      [3, 1, 4, 2])
  path.write_text("date,y\n2020-01-02,1\n2020-01-02,2\n")
  with pytest.raises(DataError, match="repeats a date: rows 2 and 3"):
    series_lib.load(csv_forecast(path, date_column="date"))
  path.write_text("date,y\n2020-01-02,1\nsoon,2\n")
  with pytest.raises(DataError, match=r"not dates, first at row 3 .*'soon'"):
    series_lib.load(csv_forecast(path, date_column="date"))


def test_input_columns_need_a_series_with_columns():
  c = tiny_forecast_config(forecast__input_columns=("x",))
  with pytest.raises(UserError, match=r"forecast.input_columns=\('x',\) "
                     r"needs a series with several columns"):
    config_check.validate(c)
  c = tiny_forecast_config(forecast__series="msft", forecast__column="Adj")
  with pytest.raises(UserError, match=r"forecast.column='Adj' is not a "
                     r"column of series 'msft'. Valid choices: 'Open'"):
    config_check.validate(c)


# -- Training and predict. ----------------------------------------------------


def test_multivariate_training_lowers_the_loss_and_predict_reads_it(
    tmp_path):
  path = write_frame(tmp_path / "a.csv", two_columns())
  workdir = tmp_path / "run"
  results = train.train_and_evaluate(csv_config(path), workdir)
  records = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text(
  ).splitlines()]
  losses = [r["loss"] for r in records if r["split"] == "train"]
  assert losses[-1] < 0.5 * losses[0]
  assert results["eval"]["test"]["mae"] < results["eval"]["test"][
      "naive_mae"]
  meta = json.loads((workdir / forecast.SCALER_FILE).read_text())
  assert [i["column"] for i in meta["inputs"]] == ["y", "x"]
  task, _, params, _ = forecast.load_for_inference(workdir)
  assert task.init_inputs()[0].shape == (1, 32, 2)
  assert task.input_scalers[1] == series_lib.Scaler.from_json(
      meta["inputs"][1])
  values, method = task.forecast_future(params, 1)
  assert method == "direct" and abs(values[0]) < 2
  with pytest.raises(UserError, match=r"also reads 'x' .*does not "
                     r"forecast.*forecast.horizon >= 3"):
    task.forecast_future(params, 3)


# -- MSFT. --------------------------------------------------------------------


def test_msft_columns_and_log_return():
  from pmdarima import datasets  # pylint: disable=g-import-not-at-top
  raw = datasets.load_msft()
  c = tiny_config("gru_forecast_msft")
  assert c.forecast.column == "log_return"
  s = series_lib.load(c.forecast)
  close = raw["Close"].to_numpy(np.float64)
  assert len(s.values) == len(raw) - 1 == 7982  # day 1 has no return
  np.testing.assert_allclose(s.values, np.log(close[1:] / close[:-1]),
                             rtol=1e-12)
  assert s.input_names == ("log_return", "log_range", "log_volume")
  np.testing.assert_array_equal(s.inputs[:, 0], s.values)
  assert np.all(np.diff(s.time) > 0) and 1986 < s.time[0] < s.time[-1] < 2018
  close_config = tiny_config("gru_forecast_msft", forecast__column="Close")
  np.testing.assert_array_equal(series_lib.load(close_config.forecast).values,
                                close[1:])
  with pytest.raises(UserError, match=r"target=\.\.\.\) 'open'.*'close', "
                     r"'return'"):
    base_config.load_file("configs/gru_forecast_msft.py:target=open")
