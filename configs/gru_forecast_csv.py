"""One-step forecasting of a user's own series (any numeric CSV column)
with a GRU, with the choices that the other configs make by hand taken from
the train split.

  python -m rnnlab.main --config=configs/gru_forecast_csv.py \\
      --config.forecast.csv=my.csv --config.forecast.column=value \\
      --config.forecast.date_column=date --workdir=runs/mine
  python -m rnnlab.predict --workdir=runs/mine --steps=12
  python -m rnnlab.main --config=configs/gru_forecast_csv.py:runlocal \\
      --config.forecast.csv=my.csv --config.forecast.column=value --workdir=/tmp/mine

Decided from the train split only (70/15/15 in time order), each logged and
saved in <workdir>/forecast_scaler.json and forecast_test.json:
* differencing: first differences when the ADF test cannot reject a unit
  root and KPSS rejects stationarity (both at 5%);
* the season (seasonal naive baseline and seasonal ARIMA terms): the
  autocorrelation's peak, or --config.forecast.season=m when you know it;
* the window: min(64, a quarter of the train split), loss on its last half;
* the ARIMA baseline: (p, d, q) by AIC over p <= 4, q <= 2, d = 1 when
  differencing (no drift or drift), plus seasonal (P, 0, Q) terms for
  seasons up to 24.
Training: one GRU layer of 16, Adam 1e-3, up to 2,000 steps of 64 windows,
validation every 50 steps, early stopping after 8 without improvement; the
reported test metrics are those of the checkpoint the validation loss
chose (<workdir>/best/).

Measured 2026-12-07 on the project's shared 2-core CPU (AMD EPYC), seed 0
on sunspots (--config.forecast.series=sunspots; 66 s wall clock, 50 s of
it the ARIMA search): levels, season 11, window 54; stopped at step 900,
best step 500; test MAE 11.69 vs naive 22.45, seasonal naive 25.83 and the
chosen ARIMA(4, 0, 2)(1, 0, 0, 11) 22.23. Held-out series (never tuned on;
python -m experiments.forecast_heldout, seeds 0-2), test MAE / naive and
/ ARIMA: airline 0.67 / 2.31, lynx 0.57 / 0.51, wineind 0.91 / 2.34 (seed 2
worse than naive), taylor 0.42 / 0.93, realgdp 0.65 / 0.84. Details:
docs/forecasting.md.
"""
from rnnlab import recipes


def get_config(arg: str = ""):
  arg = recipes.parse_arg(arg, runlocal=False)
  c = recipes.forecast_config("csv", "gru")
  recipes.make_forecast_auto(c)
  if arg.runlocal:
    recipes.make_forecast_runlocal(c)
    c.train.patience = 0
  return c
