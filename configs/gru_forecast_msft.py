"""One-day-ahead forecasting of daily MSFT prices (pmdarima's offline
copy, 1986-2017, 7,982 trading days) with a GRU reading several inputs.

  python -m rnnlab.main --config=configs/gru_forecast_msft.py --workdir=runs/msft_return
  python -m rnnlab.main --config=configs/gru_forecast_msft.py:target=close --workdir=runs/msft_close
  python -m rnnlab.predict --workdir=runs/msft_return --steps=1
  python -m rnnlab.main --config=configs/gru_forecast_msft.py:runlocal --workdir=/tmp/msft

arg: comma-separated "target=return" (default) or "target=close", and
"runlocal" (a seconds-long smoke run).

target=return: the next day's log return log(Close_t / Close_{t-1}). The
GRU reads three columns per day: the log return, the intraday range
log(High / Low) and log(1 + Volume), each standardised with its own
train-split mean and std. Baselines on the same days: last value (today's
return as tomorrow's) and ARIMA(0, 0, 0) without a constant, which
forecasts a zero return: the random walk of the price.

target=close: the next close (USD). The GRU forecasts the first difference
Close_t - Close_{t-1} (forecast.difference), from the differenced close,
the log return, the range and the log volume. The last-value naive
forecast is the random walk; ARIMA(0, 1, 0) with drift is the random walk
with drift.

Split 70/15/15 in time order: train 1986-2008-05, validation to 2013-02,
test to 2017-11. One GRU layer of 16 over 64-day windows, loss on each
window's last 32 positions, 1,000 steps of 64 windows, Adam 1e-3. No
setting was tuned (validation or test): daily returns are close to
unpredictable, and the expected finding is that no model beats the random
walk by more than noise.

Measured 2026-12-07 on the project's shared 2-core CPU (AMD EPYC), seeds
0-2 (experiments/forecast_seeds.py; one run: 17 s return, 23 s close, wall
clock). target=return: test MAE 0.009895 ± 0.000055 vs the random walk's
(zero return) 0.009517, ratio 1.040 ± 0.006: worse on every seed; naive
(today's return) 0.01411. target=close: test MAE 0.4298 ± 0.0020 USD vs
the random walk's 0.4280 and with drift 0.4278: ratio 1.005 ± 0.005, at the
random walk (0.1% better on seed 0, 0.7% worse on seeds 1, 2). Details:
docs/forecasting.md.
"""
from rnnlab import recipes


def get_config(arg: str = ""):
  arg = recipes.parse_arg(arg, runlocal=False,
                          target=("return", recipes.msft_target))
  c = recipes.forecast_config("msft", "gru")
  c.forecast.column = recipes.MSFT_TARGETS[arg.target]
  context = ("log_return", "log_range", "log_volume")
  if arg.target == "close":
    c.forecast.input_columns = ("Close",) + context
    c.forecast.difference = True
    c.forecast.arima_order, c.forecast.arima_trend = (0, 1, 0), "t"
  else:
    c.forecast.input_columns = context
    c.forecast.arima_order, c.forecast.arima_trend = (0, 0, 0), "n"
  c.forecast.window, c.forecast.loss_positions = 64, 32
  c.model.hidden_size = 16
  c.train.steps = 1000
  c.optim.learning_rate = 1e-3
  if arg.runlocal:
    recipes.make_forecast_runlocal(c)
  return c
