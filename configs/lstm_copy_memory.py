"""The copy-memory problem (Hochreiter & Schmidhuber 1997; Arjovsky et al.
2016): read 10 symbols (alphabet of 8), wait through `lag` blanks and a
delimiter, then output the 10 symbols in order.

  python -m rnnlab.main --config=configs/lstm_copy_memory.py --workdir=runs/copy_lstm
  python -m rnnlab.main --config=configs/lstm_copy_memory.py:cell=gru,lag=50 --workdir=runs/copy_gru50
  python -m rnnlab.main --config=configs/lstm_copy_memory.py:runlocal --workdir=/tmp/copy

The arg is comma-separated "cell=<rnn|lstm|gru>" (default lstm), "lag=<n>"
(default 100) and/or "runlocal" (rnnlab.recipes.synthetic_config).
Sequences are 10 + lag + 1 + 10 steps long (rnnlab/data/synthetic.py); the
loss is the cross-entropy over the 10 output positions only, whose baseline
is ln 8 = 2.079 nats per symbol (accuracy 1/8); "solved" = test symbol
accuracy >= 99%. One 64-unit layer, 4,000 steps of 64 sequences, Adam 2e-3
(100 warm-up steps, cosine decay to 1e-4), clip 1.0.

Measured (2026-11-26, this 2-core CPU shared with other work, one core,
jax 0.10.2; by experiments/lag_sweep.py, which runs this config changing
only checkpoint frequency and the progress bar; docs/lag_sweep.md): not
solved by any cell at any lag in 4,000 steps. The default (LSTM, lag 100)
stays at chance: test accuracy 12.8%, loss 2.079 nats, 2 min 02 s wall.
Test symbol accuracy by cell and lag 25 / 50 / 100 / 200:
  rnn   12.7% / 12.5% / 12.8% / 12.7% (chance)
  lstm  56.6% / 35.1% / 12.8% / 12.8%
  gru   57.0% / 59.9% / 30.3% / 30.3%
"""
from rnnlab import recipes


def get_config(arg: str = ""):
  return recipes.synthetic_config("copy_memory", arg, cell="lstm", lag=100)
