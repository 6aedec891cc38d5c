"""Univariate time series for forecasting: sources, splits, scaling, windows,
and the classical baselines (naive, seasonal naive, ARIMA).

Sources (`SOURCES`, config key forecast.series):
  sine      the chapter's noisy sine x_t = sin(t / 10) + u_t, u_t ~ U[-a, a]
            (a = forecast.noise), t = 0 .. forecast.num_points - 1, noise
            drawn from forecast.noise_seed (fixed across config.seed, so seeds
            vary only the model). The noise-free sin(t / 10) is kept as `Series.clean`.
  co2       statsmodels.datasets.co2: weekly Mauna Loa CO2 (ppm), 1958-2001,
            2,284 weeks of which 59 are missing.
  sunspots  statsmodels.datasets.sunspots: yearly sunspot activity,
            1700-2008 (309 years).
  csv       one numeric column (forecast.column) of the user's CSV
            (forecast.csv); empty cells count as missing.

Missing values (forecast.missing): "error" refuses them, naming how many and
where; "interpolate" fills them linearly in position (and the nearest value
at either end).

Split: chronological, train first, then validation (forecast.val_fraction),
then test (forecast.test_fraction) at the end. Everything fitted from data (scaling,
ARIMA, the MASE scale) uses the train split only.

Shape legend: N series length, B batch, W window (context) length,
H horizon (outputs per forecast).
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


@dataclasses.dataclass
class Series:
  """One univariate series; `time` labels the points (x axis of plots)."""
  name: str
  values: np.ndarray  # [N] float64, original units
  time: np.ndarray  # [N] float64: t, year, or decimal year
  unit: str = ""
  clean: np.ndarray | None = None  # [N] noise-free values (sine only)

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
  columns = [str(c) for c in frame.columns]
  if forecast_config.column not in columns:
    raise DataError(
        f"forecast.column={forecast_config.column!r} is not a column of "
        f"{path}. "
        f"Valid choices: {', '.join(map(repr, columns))}.")
  raw = frame[forecast_config.column]
  values = pd.to_numeric(raw, errors="coerce")
  # Cells that were present but did not parse as numbers (empty cells are
  # missing values, handled by forecast.missing).
  bad = np.flatnonzero(values.isna().to_numpy() & raw.notna().to_numpy())
  if bad.size:
    examples = ", ".join(f"row {i + 2}: {raw.iloc[i]!r}" for i in bad[:5])
    raise DataError(
        f"Column {forecast_config.column!r} of {path} has {bad.size} "
        f"non-numeric value(s) ({examples}{', ...' if bad.size > 5 else ''}; rows "
        "counted from the header as row 1). Forecasting needs numbers.")
  return Series(f"csv:{path.name}:{forecast_config.column}",
                values.to_numpy(np.float64),
                np.arange(len(values), dtype=np.float64))


SOURCES: dict[str, Callable[[Any], Series]] = {
    "sine": sine,
    "co2": co2,
    "sunspots": sunspots,
    "csv": csv,
}


def fill_missing(series: Series, policy: str) -> Series:
  """Applies forecast.missing: "error" or "interpolate" (linear in position)."""
  lookup({k: k for k in MISSING_CHOICES}, policy, "forecast.missing policy")
  missing = np.flatnonzero(~np.isfinite(series.values))
  if not missing.size:
    return series
  if policy == "error":
    where = ", ".join(f"index {i} (time {series.time[i]:.6g})"
                      for i in missing[:5])
    raise DataError(
        f"Series {series.name!r} has {missing.size} missing value(s) of "
        f"{series.values.size}, e.g. at {where}"
        f"{', ...' if missing.size > 5 else ''}. Set forecast.missing to one "
        f"of {', '.join(map(repr, MISSING_CHOICES))} ('interpolate' fills them "
        "linearly).")
  present = np.flatnonzero(np.isfinite(series.values))
  if not present.size:
    raise DataError(f"Series {series.name!r} has no values at all.")
  # np.interp holds the first/last present value beyond either end.
  values = series.values.copy()
  values[missing] = np.interp(missing, present, series.values[present])
  return dataclasses.replace(series, values=values)


def load(forecast_config) -> Series:
  """The series named by forecast.series, with missing values handled."""
  source = lookup(SOURCES, forecast_config.series, "series (forecast.series)")
  return fill_missing(source(forecast_config), forecast_config.missing)


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


def train_windows(z: np.ndarray, starts: np.ndarray, window: int,
                  horizon: int) -> dict[str, np.ndarray]:
  """Windows of normalised values z [N] starting at `starts` [B].

  inputs [B, W, 1] = z[s : s + W]; targets [B, W, H]: position j holds the
  next H values z[s + j + 1 : s + j + 1 + H].
  """
  offsets = np.arange(window)[:, None] + 1 + np.arange(horizon)[None, :]
  inputs = z[starts[:, None] + np.arange(window)[None, :]]
  targets = z[starts[:, None, None] + offsets[None]]
  return {"inputs": inputs[..., None].astype(np.float32),
          "targets": targets.astype(np.float32)}


def origin_windows(z: np.ndarray, targets: np.ndarray, window: int
                   ) -> np.ndarray:
  """Rolling-origin inputs [len(targets), W, 1]: for target index t, the W
  values z[t - W : t] up to its origin t - 1."""
  index = np.asarray(targets)[:, None] - window + np.arange(window)[None, :]
  if index.size and index.min() < 0:
    raise UserError(f"Target index {int(targets[0])} needs {window} earlier "
                    "points (forecast.window); the train split is too short.")
  return z[index][..., None].astype(np.float32)


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
