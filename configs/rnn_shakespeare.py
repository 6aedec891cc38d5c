"""Elman RNN character LM on Tiny Shakespeare: the ungated baseline.

  python -m rnnlab.main --config=configs/rnn_shakespeare.py --workdir=runs/rnn
  python -m rnnlab.main --config=configs/rnn_shakespeare.py:runlocal --workdir=/tmp/rnn

2 x 256 Elman RNN (tanh); otherwise the shared recipe of
rnnlab/base_config.py: 64-dim embedding, dropout 0.1, 2,000 steps of 64 random
128-character windows, Adam 2e-3 (100 warm-up steps, cosine decay to 2e-4),
clip 1.0. Split: first 90% train, last 10% validation.

Measured (2026-11-26, this 2-core CPU machine, jax 0.10.2, the first command
above with RNNLAB_DATA_DIR=../shared/data): validation 1.5652 nats/char
(2.258 bits/char) after 2,000 steps, in 5 min 59 s wall clock for the whole
command; 48.3k characters/s training throughput (median over log
intervals); 234,369 parameters. Validation by step: 1.6842 (500), 1.6043
(1,000), 1.5766 (1,500), 1.5652 (2,000). The gated cells do better on the
same budget: GRU 1.4655, LSTM 1.4829.
"""
from rnnlab import base_config
from rnnlab import recipes


def get_config(arg: str = ""):
  arg = recipes.parse_arg(arg, runlocal=False)
  c = base_config.get_config()
  c.model.cell = "rnn"
  c.model.activation = "tanh"
  # Two steps per loop iteration: the Elman step is so small that loop
  # overhead shows (74.7k vs 69.8k tok/s in benchmarks/train_throughput.py).
  c.model.unroll = 2
  if arg.runlocal:
    recipes.make_runlocal(c)
  return c
