"""One-step forecasting of weekly Mauna Loa CO2 (statsmodels.datasets.co2,
1958-2001, 2,284 weeks) with a GRU.

  python -m rnnlab.main --config=configs/gru_forecast_co2.py --workdir=runs/co2
  python -m rnnlab.predict --workdir=runs/co2 --steps=52
  python -m rnnlab.main --config=configs/gru_forecast_co2.py:runlocal --workdir=/tmp/co2

The 59 missing weeks are interpolated linearly (forecast.missing="interpolate").
The upward trend takes the test range (1995-2001) above every training value,
so the model forecasts first differences x_t - x_{t-1}, standardised with
train statistics, and adds them to the last observed value. Split 70/15/15
in time order. One GRU layer of 16 over 104-week windows (two seasons), loss
on each window's last 52 positions, 1,500 steps of 64 windows, Adam 1e-3:
larger or longer-trained models fit the weekly noise (hidden 64 at Adam 3e-3
was best on validation at step 500 and worse than the naive forecast by
step 3,000). Baselines on the same test weeks: last value, seasonal naive
(52 weeks), and ARIMA(2, 1, 2) with drift fitted on the train weeks only.

Measured 2026-11-26 on the project's shared 2-core CPU (seed 0, the first
command: 21 s wall clock): test MAE 0.2993 ppm vs naive 0.3977, seasonal
naive 1.699, ARIMA(2, 1, 2) 0.3451 (ratio 0.867). Seeds 0-2
(experiments/forecast_seeds.py, docs/forecasting.md): MAE 0.3027 ± 0.011,
ratio to ARIMA 0.877 ± 0.031.
"""
from rnnlab import recipes


def get_config(arg: str = ""):
  arg = recipes.parse_arg(arg, runlocal=False)
  c = recipes.forecast_config("co2", "gru")
  c.forecast.missing = "interpolate"
  c.forecast.difference = True
  c.forecast.window, c.forecast.loss_positions = 104, 52
  c.forecast.season = 52
  c.model.hidden_size = 16
  c.train.steps = 1500
  c.optim.learning_rate = 1e-3
  c.forecast.arima_order, c.forecast.arima_trend = (2, 1, 2), "t"
  if arg.runlocal:
    recipes.make_forecast_runlocal(c)
  return c
