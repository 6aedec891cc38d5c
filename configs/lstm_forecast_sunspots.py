"""One-step forecasting of yearly sunspot activity
(statsmodels.datasets.sunspots, 1700-2008, 309 years) with an LSTM.

  python -m rnnlab.main --config=configs/lstm_forecast_sunspots.py --workdir=runs/sunspots
  python -m rnnlab.predict --workdir=runs/sunspots --steps=11
  python -m rnnlab.main --config=configs/lstm_forecast_sunspots.py:runlocal --workdir=/tmp/sunspots

Levels (no differencing: the series has no trend), standardised with train
statistics; split 70/15/15 in time order (217 / 46 / 46 years). One LSTM
layer of 16 over 32-year windows, loss on every position of the window,
1,500 steps of 64 windows, Adam 1e-3 (hidden 32 with the loss on the last 16
positions overfitted after 300 steps). Baselines on the same test years:
last value, seasonal naive with the 11-year cycle, and AR(9) with a constant
fitted on the train years only.

Measured 2026-11-26 on the project's shared 2-core CPU (seed 0, the first
command: 15 s wall clock): test MAE 11.92 vs naive 22.45, seasonal naive
25.83, AR(9) 14.11 (ratio 0.845). Seeds 0-2 (experiments/forecast_seeds.py,
docs/forecasting.md): MAE 12.99 ± 1.3, ratio to AR(9) 0.92 ± 0.09 (seed 1:
1.03, behind AR(9)).
"""
from rnnlab import recipes


def get_config(arg: str = ""):
  arg = recipes.parse_arg(arg, runlocal=False)
  c = recipes.forecast_config("sunspots", "lstm")
  c.forecast.window, c.forecast.loss_positions = 32, 32
  c.forecast.season = 11
  c.model.hidden_size = 16
  c.train.steps = 1500
  c.optim.learning_rate = 1e-3
  c.forecast.arima_order, c.forecast.arima_trend = (9, 0, 0), "c"
  if arg.runlocal:
    recipes.make_forecast_runlocal(c)
  return c
