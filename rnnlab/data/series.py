"""Time series for forecasting: sources, splits, scaling, windows, and the
classical baselines (naive, seasonal naive, ARIMA).

A series has one target column (forecast.column), which the model forecasts
and the baselines see, and optionally several input columns
(forecast.input_columns) that the model reads at each step.

Sources (`SOURCES`, config key forecast.series):
  sine      the chapter's noisy sine x_t = sin(t / 10) + u_t, u_t ~ U[-a, a]
            (a = forecast.noise), t = 0 .. forecast.num_points - 1, noise
            drawn from forecast.noise_seed (fixed across config.seed, so seeds
            vary only the model). The noise-free sin(t / 10) is kept as `Series.clean`.
  co2       statsmodels.datasets.co2: weekly Mauna Loa CO2 (ppm), 1958-2001,
            2,284 weeks of which 59 are missing.
  sunspots  statsmodels.datasets.sunspots: yearly sunspot activity,
            1700-2008 (309 years).
  msft      pmdarima.datasets.load_msft(): daily MSFT prices 1986-03-14 ..
            2017-11-10 (7,982 trading days; the first day, whose return is
            undefined, is dropped). Columns `MSFT_COLUMNS`: Open, High, Low,
            Close, Volume and the derived log_return = log(Close_t /
            Close_{t-1}), log_range = log(High_t / Low_t) and log_volume =
            log(1 + Volume_t).
  csv       numeric columns of the user's CSV (forecast.csv): the target
            forecast.column and the inputs forecast.input_columns; rows in
            file order, or sorted by forecast.date_column; empty cells count
            as missing.

Missing values (forecast.missing), in the target and every input column:
"error" refuses them, naming the column, how many and where; "interpolate"
fills each column linearly in position (and the nearest value at either
end).

Split: chronological, train first, then validation (forecast.val_fraction),
then test (forecast.test_fraction) at the end. Everything fitted from data (scaling,
ARIMA, the MASE scale) uses the train split only.

Shape legend: N series length, B batch, W window (context) length,
H horizon (outputs per forecast), F input columns.
"""
from __future__ import annotations

import dataclasses
import pathlib
import warnings
from typing import Any, Callable

import numpy as np

from rnnlab.errors import DataError, UserError
from rnnlab.registry import lookup

MISSING_CHOICES = ("error", "interpolate")
ARIMA_MAXITER = 1000
TRAIN_STREAM = 1  # np.random.default_rng([seed, TRAIN_STREAM, step])


# The single-column sources; input_columns needs one of the others.
UNIVARIATE_SOURCES = ("sine", "co2", "sunspots")
MSFT_PRICES = ("Open", "High", "Low", "Close", "Volume")
MSFT_COLUMNS = MSFT_PRICES + ("log_return", "log_range", "log_volume")


@dataclasses.dataclass
class Series:
  """A target series and the model's input columns; `time` labels the
  points (x axis of plots)."""
  name: str
  values: np.ndarray  # [N] float64, the target in original units
  time: np.ndarray  # [N] float64: t, year, or decimal year
  unit: str = ""
  clean: np.ndarray | None = None  # [N] noise-free values (sine only)
  column: str = "value"  # the target's column name (messages)
  # [N, F] float64 input columns in original units, named `input_names`;
  # None: the target alone (F = 1).
  inputs: np.ndarray | None = None
  input_names: tuple[str, ...] = ()
  rows: np.ndarray | None = None  # [N] CSV file rows (header = row 1)

  @property
  def input_columns(self) -> tuple[str, ...]:
    """The model's input column names, in order."""
    return self.input_names if self.inputs is not None else (self.column,)

  def input_values(self) -> np.ndarray:
    """[N, F] the input columns, original units."""
    return self.values[:, None] if self.inputs is None else self.inputs

  @property
  def time_step(self) -> float:
    """Spacing of `time`, for labelling forecasts past the end."""
    return float(np.median(np.diff(self.time))) if len(self.time) > 1 else 1.0


def sine(forecast_config) -> Series:
  n = forecast_config.num_points
  if n < 2:
    raise UserError(f"forecast.num_points={n} must be >= 2.")
  t = np.arange(n, dtype=np.float64)
  clean = np.sin(t / 10.0)
  rng = np.random.default_rng(forecast_config.noise_seed)
  noise = rng.uniform(-forecast_config.noise, forecast_config.noise, n)
  return Series("sine", clean + noise, t, clean=clean)


def co2(forecast_config) -> Series:
  del forecast_config
  import statsmodels.api as sm  # pylint: disable=g-import-not-at-top
  frame = sm.datasets.co2.load_pandas().data
  dates = frame.index
  # Decimal years, so that forecasts past the end can be labelled.
  years = dates.year + (dates.dayofyear - 1) / 365.25
  return Series("co2", frame["co2"].to_numpy(np.float64),
                np.asarray(years, np.float64), unit="ppm")


def sunspots(forecast_config) -> Series:
  del forecast_config
  import statsmodels.api as sm  # pylint: disable=g-import-not-at-top
  frame = sm.datasets.sunspots.load_pandas().data
  return Series("sunspots", frame["SUNACTIVITY"].to_numpy(np.float64),
                frame["YEAR"].to_numpy(np.float64), unit="sunspot activity")


def msft(forecast_config) -> Series:
  """Daily MSFT prices (pmdarima's offline copy), target and inputs chosen
  from `MSFT_COLUMNS`."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  from pmdarima import datasets  # pylint: disable=g-import-not-at-top
  frame = datasets.load_msft()
  dates = pd.to_datetime(frame["Date"])
  columns = {k: frame[k].to_numpy(np.float64) for k in MSFT_PRICES}
  close = columns["Close"]
  columns["log_return"] = np.concatenate(
      [[np.nan], np.log(close[1:] / close[:-1])])
  columns["log_range"] = np.log(columns["High"] / columns["Low"])
  columns["log_volume"] = np.log1p(columns["Volume"])  # one day traded 0
  # The first day has no return: drop it from every column so that the
  # series is the same whichever column is the target.
  columns = {k: v[1:] for k, v in columns.items()}
  years = _decimal_years(dates[1:])
  return _pick_columns(f"msft:{forecast_config.column}", columns, years,
                       forecast_config, "msft",
                       "log return" if forecast_config.column == "log_return"
                       else "USD" if forecast_config.column in MSFT_PRICES[:4]
                       else "")


def csv(forecast_config) -> Series:
  import pandas as pd  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(forecast_config.csv).expanduser()
  if not forecast_config.csv:
    raise UserError("forecast.series='csv' needs forecast.csv, the path of "
                    "a CSV file, and forecast.column, the column to "
                    "forecast.")
  if not path.is_file():
    raise DataError(f"forecast.csv={str(path)!r}: no such file.")
  try:
    # round_trip: the values exactly as written (the default parser may be
    # off in the last bit).
    frame = pd.read_csv(path, float_precision="round_trip")
  except (ValueError, OSError) as e:  # pandas' ParserError is a ValueError
    raise DataError(f"forecast.csv={str(path)!r} is not a readable CSV file: "
                    f"{e}") from None
  frame.columns = [str(c) for c in frame.columns]
  names = [("column", forecast_config.column)]
  names += [("input_columns", c) for c in forecast_config.input_columns]
  if forecast_config.date_column:
    names.append(("date_column", forecast_config.date_column))
  for key, name in names:
    if name not in frame.columns:
      raise DataError(
          f"forecast.{key}={name!r} is not a column of {path}. "
          f"Valid choices: {', '.join(map(repr, frame.columns))}.")
  wanted = dict.fromkeys((forecast_config.column,) +
                         tuple(forecast_config.input_columns))
  columns = {name: _numeric(frame[name], name, path) for name in wanted}
  rows = np.arange(len(frame)) + 2  # the header is row 1
  time = np.arange(len(frame), dtype=np.float64)
  if forecast_config.date_column:
    time = _date_time(frame[forecast_config.date_column],
                      forecast_config.date_column, path)
    order = np.argsort(time, kind="stable")
    columns = {k: v[order] for k, v in columns.items()}
    time, rows = time[order], rows[order]
    same = np.flatnonzero(np.diff(time) == 0)
    if same.size:
      raise DataError(
          f"forecast.date_column={forecast_config.date_column!r} of {path} "
          f"repeats a date: rows {rows[same[0]]} and {rows[same[0] + 1]} "
          f"({frame[forecast_config.date_column].iloc[rows[same[0]] - 2]!r})"
          "; the order of the points would be ambiguous.")
  series = _pick_columns(f"csv:{path.name}:{forecast_config.column}",
                         columns, time, forecast_config, "csv")
  return dataclasses.replace(series, rows=rows)


def _numeric(raw, name: str, path) -> np.ndarray:
  """A CSV column [N] as float64 (empty cells NaN); DataError naming the
  column and its first non-numeric cells."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  values = pd.to_numeric(raw, errors="coerce")
  # Cells that were present but did not parse as numbers (empty cells are
  # missing values, handled by forecast.missing).
  bad = np.flatnonzero(values.isna().to_numpy() & raw.notna().to_numpy())
  if bad.size:
    examples = ", ".join(f"row {i + 2}: {raw.iloc[i]!r}" for i in bad[:5])
    raise DataError(
        f"Column {name!r} of {path} has {bad.size} "
        f"non-numeric value(s) ({examples}{', ...' if bad.size > 5 else ''}; rows "
        "counted from the header as row 1). Forecasting needs numbers.")
  return values.to_numpy(np.float64)


def _date_time(raw, name: str, path) -> np.ndarray:
  """forecast.date_column [N] -> float64 times for ordering and labels:
  numbers as they are (e.g. years), anything else parsed as dates and
  given in decimal years."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  where = f"forecast.date_column={name!r} of {path}"
  missing = np.flatnonzero(raw.isna().to_numpy())
  if missing.size:
    raise DataError(f"{where} is empty at row {missing[0] + 2} (header = row "
                    "1): every row needs a date to be ordered.")
  numbers = pd.to_numeric(raw, errors="coerce")
  if numbers.notna().all():
    return numbers.to_numpy(np.float64)
  # format="mixed": each cell parsed on its own (pandas would otherwise
  # apply the first cell's format to all and drop the rest as NaT).
  dates = pd.to_datetime(raw.astype(str), errors="coerce", format="mixed")
  bad = np.flatnonzero(dates.isna().to_numpy())
  if bad.size:
    raise DataError(f"{where} has {bad.size} value(s) that are not dates, "
                    f"first at row {bad[0] + 2} (header = row 1): "
                    f"{raw.iloc[bad[0]]!r}.")
  return _decimal_years(pd.DatetimeIndex(dates))


def _decimal_years(dates) -> np.ndarray:
  """Dates -> decimal years [N] float64, to label forecasts past the end
  (fractions of a day kept, so intraday points stay ordered)."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  dates = pd.DatetimeIndex(dates)
  day = (dates - dates.normalize()) / pd.Timedelta(days=1)
  return np.asarray(dates.year + (dates.dayofyear - 1 + day) / 365.25,
                    np.float64)


def _pick_columns(name: str, columns: dict[str, np.ndarray],
                  time: np.ndarray, forecast_config, source: str,
                  unit: str = "") -> Series:
  """The Series of target forecast.column and inputs
  forecast.input_columns from `columns` (name -> [N])."""
  for key, wanted in ([("column", forecast_config.column)] +
                      [("input_columns", c)
                       for c in forecast_config.input_columns]):
    if wanted not in columns:
      raise UserError(f"forecast.{key}={wanted!r} is not a column of "
                      f"series {source!r}. Valid choices: "
                      f"{', '.join(map(repr, columns))}.")
  inputs, names = None, tuple(forecast_config.input_columns)
  if names and names != (forecast_config.column,):
    inputs = np.stack([columns[c] for c in names], axis=1)  # [N, F]
  else:
    names = ()
  return Series(name, columns[forecast_config.column], time, unit=unit,
                column=forecast_config.column, inputs=inputs,
                input_names=names)


SOURCES: dict[str, Callable[[Any], Series]] = {
    "sine": sine,
    "co2": co2,
    "sunspots": sunspots,
    "msft": msft,
    "csv": csv,
}


def fill_missing(series: Series, policy: str) -> Series:
  """Applies forecast.missing to the target and each input column: "error"
  or "interpolate" (linear in position)."""
  lookup({k: k for k in MISSING_CHOICES}, policy, "forecast.missing policy")
  values = _fill_column(series, series.column, series.values, policy)
  inputs = series.inputs
  if inputs is not None:
    inputs = np.stack([_fill_column(series, name, inputs[:, i], policy)
                       for i, name in enumerate(series.input_names)], axis=1)
  return dataclasses.replace(series, values=values, inputs=inputs)


def _fill_column(series: Series, column: str, values: np.ndarray,
                 policy: str) -> np.ndarray:
  """One column [N] with forecast.missing applied."""
  missing = np.flatnonzero(~np.isfinite(values))
  if not missing.size:
    return values
  if policy == "error":
    where = ", ".join(f"index {i} (time {series.time[i]:.6g})"
                      for i in missing[:5])
    rows = ""
    if series.rows is not None:
      rows = (f" In the file: row(s) "
              f"{', '.join(str(r) for r in series.rows[missing[:5]])} "
              "(header = row 1).")
    subject = f"Series {series.name!r}"
    if series.inputs is not None or column != series.column:
      subject = f"Column {column!r} of series {series.name!r}"
    raise DataError(
        f"{subject} has {missing.size} missing value(s) of "
        f"{values.size}, e.g. at {where}"
        f"{', ...' if missing.size > 5 else ''}. Set forecast.missing to one "
        f"of {', '.join(map(repr, MISSING_CHOICES))} ('interpolate' fills them "
        f"linearly).{rows}")
  present = np.flatnonzero(np.isfinite(values))
  if not present.size:
    raise DataError(f"Column {column!r} of series {series.name!r} has no "
                    "values at all.")
  # np.interp holds the first/last present value beyond either end.
  filled = values.copy()
  filled[missing] = np.interp(missing, present, values[present])
  return filled


def load(forecast_config) -> Series:
  """The series named by forecast.series, with missing values handled."""
  source = lookup(SOURCES, forecast_config.series, "series (forecast.series)")
  check_columns(forecast_config)
  return fill_missing(source(forecast_config), forecast_config.missing)


def check_columns(forecast_config):
  """UserError for column keys the series cannot use, before reading it:
  inputs or a date column on a single-column source, msft names outside
  `MSFT_COLUMNS`, repeated input names."""
  d = forecast_config
  names = tuple(d.input_columns)
  if len(set(names)) != len(names):
    raise UserError(f"forecast.input_columns={names!r} names a column more "
                    "than once.")
  if d.series in UNIVARIATE_SOURCES and names:
    raise UserError(
        f"forecast.input_columns={names!r} needs a series with several "
        f"columns (forecast.series 'msft' or 'csv'); {d.series!r} has one. "
        "Use input_columns=() to forecast it from its own past.")
  if d.date_column and d.series != "csv":
    raise UserError(f"forecast.date_column={d.date_column!r} orders a CSV "
                    f"file's rows (forecast.series='csv'); series "
                    f"{d.series!r} is ordered already.")
  if d.series == "msft":
    for key, name in [("column", d.column)] + [("input_columns", c)
                                               for c in names]:
      if name not in MSFT_COLUMNS:
        raise UserError(f"forecast.{key}={name!r} is not a column of series "
                        f"'msft'. Valid choices: "
                        f"{', '.join(map(repr, MSFT_COLUMNS))}.")


@dataclasses.dataclass(frozen=True)
class Split:
  """Chronological boundaries: train [0, train_end), val [train_end,
  val_end), test [val_end, n)."""
  n: int
  train_end: int
  val_end: int

  def bounds(self, split: str) -> tuple[int, int]:
    ranges = {"train": (0, self.train_end),
              "val": (self.train_end, self.val_end),
              "test": (self.val_end, self.n)}
    return lookup(ranges, split, "split")


def split(n: int, val_fraction: float, test_fraction: float) -> Split:
  if not (0 <= val_fraction and 0 <= test_fraction and
          val_fraction + test_fraction < 1):
    raise UserError(f"forecast.val_fraction={val_fraction} and "
                    f"forecast.test_fraction={test_fraction} must be >= 0 "
                    "and sum to less than 1.")
  n_test = int(round(n * test_fraction))
  n_val = int(round(n * val_fraction))
  return Split(n, n - n_val - n_test, n - n_test)


@dataclasses.dataclass(frozen=True)
class Scaler:
  """Optional differencing, then standardisation fitted on train only.

  The model sees z_t = (y_t - mean) / std with y_t = x_t - x_{t-1} if
  `difference` else x_t; z_0 is undefined (0) when differencing.
  """
  difference: bool
  mean: float
  std: float

  @property
  def first(self) -> int:
    """The first index where z_t is defined."""
    return int(self.difference)

  @classmethod
  def fit(cls, values: np.ndarray, train_end: int,
          difference: bool) -> "Scaler":
    """Statistics of the train split only (values[:train_end])."""
    y = _differenced(values[:train_end], difference)[int(difference):]
    if y.size < 2:
      raise UserError(f"The train split has {train_end} points: too few to "
                      "fit the scaling; lower forecast.val_fraction and "
                      "forecast.test_fraction or use a longer series.")
    std = float(np.std(y))
    return cls(difference, float(np.mean(y)), std if std > 0 else 1.0)

  def transform(self, values: np.ndarray) -> np.ndarray:
    """[N] original units -> [N] normalised model scale."""
    z = (_differenced(values, self.difference) - self.mean) / self.std
    if self.difference:
      z[0] = 0.0
    return z

  def to_levels(self, z: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Forecasts z [..., H] of the next H points -> original units, given
    the last observed values `last` [...] before them."""
    y = np.asarray(z, np.float64) * self.std + self.mean
    if self.difference:
      return np.asarray(last, np.float64)[..., None] + np.cumsum(y, axis=-1)
    return y

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, d: dict[str, Any]) -> "Scaler":
    return cls(bool(d["difference"]), float(d["mean"]), float(d["std"]))


def _differenced(values: np.ndarray, difference: bool) -> np.ndarray:
  values = np.asarray(values, np.float64)
  if not difference:
    return values.copy()
  return np.concatenate([[0.0], np.diff(values)])


def fit_input_scalers(series: Series, train_end: int,
                      target_scaler: Scaler) -> tuple[Scaler, ...]:
  """One Scaler per input column (F), each fitted on that column's train
  split values[:train_end] only. The target, where it is an input, keeps
  `target_scaler` (with its differencing, as in a univariate run); the
  other columns are standardised levels."""
  inputs = series.input_values()
  return tuple(
      target_scaler if name == series.column else
      Scaler.fit(inputs[:, i], train_end, difference=False)
      for i, name in enumerate(series.input_columns))


def transform_inputs(series: Series, scalers) -> np.ndarray:
  """[N, F] normalised input columns, column i scaled by scalers[i]."""
  inputs = series.input_values()
  if len(scalers) != inputs.shape[1]:
    raise UserError(f"{len(scalers)} input scalings for "
                    f"{inputs.shape[1]} input columns "
                    f"{series.input_columns!r}.")
  return np.stack([scaler.transform(inputs[:, i])
                   for i, scaler in enumerate(scalers)], axis=1)


def _as_columns(z: np.ndarray) -> np.ndarray:
  """[N] -> [N, 1]; [N, F] unchanged."""
  z = np.asarray(z)
  return z[:, None] if z.ndim == 1 else z


def train_windows(z: np.ndarray, starts: np.ndarray, window: int,
                  horizon: int, inputs: np.ndarray | None = None
                  ) -> dict[str, np.ndarray]:
  """Windows of the normalised target z [N] starting at `starts` [B].

  inputs [B, W, F] = inputs[s : s + W] (`inputs` [N, F]; None: z itself,
  F = 1); targets [B, W, H]: position j holds the target's next H values
  z[s + j + 1 : s + j + 1 + H].
  """
  columns = _as_columns(z if inputs is None else inputs)
  offsets = np.arange(window)[:, None] + 1 + np.arange(horizon)[None, :]
  windows = columns[starts[:, None] + np.arange(window)[None, :]]
  targets = np.asarray(z)[starts[:, None, None] + offsets[None]]
  return {"inputs": windows.astype(np.float32),
          "targets": targets.astype(np.float32)}


def origin_windows(z: np.ndarray, targets: np.ndarray, window: int
                   ) -> np.ndarray:
  """Rolling-origin inputs [len(targets), W, F] from z [N] (F = 1) or
  [N, F]: for target index t, the W rows z[t - W : t] up to its origin
  t - 1."""
  index = np.asarray(targets)[:, None] - window + np.arange(window)[None, :]
  if index.size and index.min() < 0:
    raise UserError(f"Target index {int(targets[0])} needs {window} earlier "
                    "points (forecast.window); the train split is too short.")
  return _as_columns(z)[index].astype(np.float32)


# -- Metrics and baselines (original units). ----------------------------------


def naive_scale(train_values: np.ndarray, lag: int = 1) -> float:
  """In-sample MAE on train of the naive forecast x_{t-lag}: MASE's scale
  (lag 1: last value; lag = the season: seasonal naive)."""
  if not 1 <= lag < len(train_values):
    raise UserError(f"forecast.mase_lag={lag} must be in [1, "
                    f"{len(train_values) - 1}] (the train split's length).")
  return float(np.mean(np.abs(train_values[lag:] - train_values[:-lag])))


def errors(forecast: np.ndarray, truth: np.ndarray, scale: float,
           prefix: str = "") -> dict[str, float]:
  """MAE, RMSE and MASE (MAE / `scale`) of forecast vs truth, both [K]."""
  error = np.asarray(forecast, np.float64) - np.asarray(truth, np.float64)
  mae = float(np.mean(np.abs(error)))
  return {f"{prefix}mae": mae,
          f"{prefix}rmse": float(np.sqrt(np.mean(np.square(error)))),
          f"{prefix}mase": mae / scale}


def naive_forecast(values: np.ndarray, start: int, end: int,
                   lag: int = 1) -> np.ndarray:
  """One-step forecasts of values[start:end] by x_{t-lag} (lag 1: last
  value; lag = the season: seasonal naive)."""
  if not 1 <= lag <= start:
    raise UserError(f"A naive forecast with lag {lag} from index {start} "
                    "needs lag in [1, start].")
  return np.asarray(values[start - lag:end - lag], np.float64)


def arima_model(train_values: np.ndarray, order,
                seasonal_order=(0, 0, 0, 0), trend: str = "n"):
  """The unfitted statsmodels ARIMA on the train values; a bad spec raises
  UserError here, before any training."""
  # pylint: disable-next=g-import-not-at-top
  from statsmodels.tsa.arima.model import ARIMA
  try:
    return ARIMA(np.asarray(train_values, np.float64), order=tuple(order),
                 seasonal_order=tuple(seasonal_order), trend=trend)
  except ValueError as e:
    raise UserError(f"Bad ARIMA spec forecast.arima_order={tuple(order)}, "
                    f"forecast.arima_seasonal_order={tuple(seasonal_order)}, "
                    f"forecast.arima_trend={trend!r}: {e}") from None


def fit_arima(train_values: np.ndarray, order, seasonal_order=(0, 0, 0, 0),
              trend: str = "n"):
  """`arima_model` fitted by maximum likelihood on the train values only;
  returns the results, with the fit's warnings as `fit_warnings`."""
  model = arima_model(train_values, order, seasonal_order, trend)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    # statsmodels' default 50 L-BFGS iterations stop short on the sine's
    # near-unit-root ARMA(2, 2) (test RMSE against sin(t/10): 0.011 vs 0.006
    # converged).
    results = model.fit(method_kwargs={"maxiter": ARIMA_MAXITER})
  results.fit_warnings = [str(w.message) for w in caught]
  return results


def arima_one_step(train_results, values: np.ndarray, start: int,
                   end: int):
  """Rolling-origin one-step forecasts of values[start:end] from an ARIMA
  fitted on values[:train_end]: the later observations are appended with
  the fitted parameters kept (refit=False), and each forecast is the Kalman
  filter's prediction from the data before it. Returns (forecasts [K],
  the extended results)."""
  train_end = int(train_results.nobs)
  if start < train_end:
    raise UserError(f"ARIMA one-step forecasts start after the train split "
                    f"(index {train_end}), not at {start}.")
  extended = train_results.append(np.asarray(values[train_end:end],
                                             np.float64), refit=False)
  return np.asarray(extended.predict(start=start, end=end - 1)), extended


# -- Decisions from the train split (configs/gru_forecast_csv.py). ------------
# Each takes the train split's values only, so the test split cannot move
# a decision; each returns the decision with the numbers behind it, for the
# log and the run's report.

SIGNIFICANCE = 0.05  # the unit-root and stationarity tests' level
MIN_DECISION_POINTS = 20  # fewer train points: the tests mean little
# A season is the lag of a local peak of the autocorrelation after it has
# first dipped below 0 (a cycle, not the short-lag decay: differenced co2
# has 0.32 at lag 3). A peak must reach SEASON_MIN_ACF (and 2.58 / sqrt(n),
# the 1% band of white noise; an AR(1) with phi 0.7 over 280 points reached
# 0.23 at lag 61), and the shortest peak within SEASON_MARGIN of the highest
# wins, so that a multiple of the period (co2: 156 weeks vs 53) does not.
SEASON_MIN_ACF = 0.25
SEASON_MARGIN = 0.9
SEASON_MAX_FRACTION = 1 / 3  # lags searched: up to a third of the split
# ARIMA search: (p, q) grid and trends by AIC on at most the last
# ARIMA_SEARCH_POINTS train points (the chosen order is then fitted on the
# whole train split); seasonal terms only for seasons up to
# ARIMA_MAX_SEASON (a weekly season of 52 makes the state space too slow:
# a SARIMA(1,1,1)(0,1,1,52) on co2 ran for minutes).
ARIMA_P = (0, 1, 2, 3, 4)
ARIMA_Q = (0, 1, 2)
ARIMA_SEASONAL_PQ = ((1, 0), (0, 1), (1, 1))
ARIMA_SEARCH_POINTS = 1000
ARIMA_MAX_SEASON = 24


def _check_decision_points(train_values: np.ndarray, what: str):
  if len(train_values) < MIN_DECISION_POINTS:
    raise UserError(
        f"{what} needs at least {MIN_DECISION_POINTS} train points; the "
        f"train split has {len(train_values)}. Use a longer series, or set "
        "the decision yourself (forecast.difference, forecast.season, "
        "forecast.arima_order).")


def decide_difference(train_values: np.ndarray) -> dict[str, Any]:
  """Whether to model first differences, from the train split: yes when
  the augmented Dickey-Fuller test cannot reject a unit root (p > 0.05)
  and KPSS rejects level stationarity (p < 0.05). Both tests must agree, so
  a stationary series near the KPSS boundary (an AR(1) with phi = 0.7) stays
  in levels and a trend or random walk is differenced."""
  # pylint: disable-next=g-import-not-at-top
  from statsmodels.tsa.stattools import adfuller, kpss
  y = np.asarray(train_values, np.float64)
  _check_decision_points(y, "forecast.auto_difference")
  with warnings.catch_warnings():
    # KPSS warns when its p-value is outside its table (0.01 .. 0.1); the
    # clipped value still decides correctly.
    warnings.simplefilter("ignore")
    adf_p = float(adfuller(y, autolag="AIC")[1])
    kpss_p = float(kpss(y, regression="c", nlags="auto")[1])
  return {"difference": bool(adf_p > SIGNIFICANCE and kpss_p < SIGNIFICANCE),
          "adf_pvalue": adf_p, "kpss_pvalue": kpss_p,
          "rule": f"ADF p > {SIGNIFICANCE} and KPSS p < {SIGNIFICANCE}"}


def detect_season(train_values: np.ndarray, difference: bool
                  ) -> dict[str, Any]:
  """The season from the train split's autocorrelation (of the first
  differences when `difference`, since a trend's ACF hides any peak):
  "season" 0 when no peak qualifies."""
  from statsmodels.tsa.stattools import acf  # pylint: disable=g-import-not-at-top
  y = np.asarray(train_values, np.float64)
  _check_decision_points(y, "forecast.detect_season")
  z = np.diff(y) if difference else y
  max_lag = max(3, int(len(z) * SEASON_MAX_FRACTION))
  a = acf(z, nlags=max_lag, fft=True)
  threshold = max(SEASON_MIN_ACF, 2.58 / np.sqrt(len(z)))
  below = np.flatnonzero(a < 0)
  first = int(below[0]) if below.size else max_lag
  peaks = [m for m in range(max(2, first), max_lag)
           if a[m] > a[m - 1] and a[m] >= a[m + 1] and a[m] >= threshold]
  season = 0
  if peaks:
    top = max(a[m] for m in peaks)
    season = min(m for m in peaks if a[m] >= SEASON_MARGIN * top)
  return {"season": season, "acf": float(a[season]) if season else None,
          "threshold": float(threshold), "max_lag": max_lag,
          "peaks": [[m, round(float(a[m]), 4)]
                    for m in sorted(peaks, key=lambda m: -a[m])[:5]]}


def adapt_window(window: int, loss_positions: int, train_points: int,
                 fraction: float) -> dict[str, Any]:
  """forecast.window_fraction > 0: the window is at most that fraction of
  the train split (a short series still gets many training windows), and
  loss_positions shrinks in proportion."""
  if not fraction:
    return {"window": window, "loss_positions": loss_positions,
            "adapted": False}
  new = max(2, min(window, int(fraction * train_points)))
  positions = max(1, min(new, round(loss_positions * new / window)))
  return {"window": new, "loss_positions": positions,
          "adapted": new != window, "configured_window": window,
          "train_points": train_points, "fraction": fraction}


def select_arima(train_values: np.ndarray, difference: bool,
                 season: int) -> dict[str, Any]:
  """The ARIMA baseline's order by AIC on the train split: d = 1 when
  differencing (AIC does not compare models of different d), p in
  ARIMA_P, q in ARIMA_Q, trend "c" (d = 0) or "n" / "t" (d = 1: no drift or
  drift); then, for 1 < season <= ARIMA_MAX_SEASON, seasonal (P, 0, Q)
  terms added to the best where they lower the AIC."""
  y = np.asarray(train_values, np.float64)
  _check_decision_points(y, "forecast.arima_search")
  y = y[-ARIMA_SEARCH_POINTS:]
  d = int(difference)
  trends = ("n", "t") if d else ("c",)
  tried = []

  def aic(order, seasonal, trend):
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")  # non-convergence: a worse AIC
      try:
        value = float(arima_model(y, order, seasonal, trend).fit().aic)
      except (np.linalg.LinAlgError, ValueError):
        value = float("inf")
    value = value if np.isfinite(value) else float("inf")
    tried.append((value, tuple(order), tuple(seasonal), trend))
    return value

  best = min(((aic((p, d, q), (0, 0, 0, 0), t), (p, d, q), t)
              for p in ARIMA_P for q in ARIMA_Q for t in trends),
             key=lambda x: x[0])
  best_aic, order, trend = best
  seasonal = (0, 0, 0, 0)
  if 1 < season <= ARIMA_MAX_SEASON:
    for big_p, big_q in ARIMA_SEASONAL_PQ:
      candidate = (big_p, 0, big_q, season)
      value = aic(order, candidate, trend)
      if value < best_aic:
        best_aic, seasonal = value, candidate
  if not np.isfinite(best_aic):
    raise DataError("forecast.arima_search: no ARIMA on the grid could be "
                    "fitted to the train split.")
  return {"order": list(order), "seasonal_order": list(seasonal),
          "trend": trend, "search_aic": best_aic, "candidates": len(tried),
          "search_points": int(len(y)),
          "seasonal_skipped": bool(season > ARIMA_MAX_SEASON)}
