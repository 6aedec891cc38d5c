"""LSTM character LM on Tiny Shakespeare.

  python -m rnnlab.main --config=configs/lstm_shakespeare.py --workdir=runs/lstm
  python -m rnnlab.main --config=configs/lstm_shakespeare.py:runlocal --workdir=/tmp/lstm

2 x 256 LSTM (forget-gate bias 1.0); otherwise the shared recipe of
rnnlab/base_config.py: 64-dim embedding, dropout 0.1, 2,000 steps of 64 random
128-character windows, Adam 2e-3 (100 warm-up steps, cosine decay to 2e-4),
clip 1.0. Split: first 90% train, last 10% validation.

Measured (2026-11-26, this 2-core CPU machine, jax 0.10.2, the first command
above with RNNLAB_DATA_DIR=../shared/data): validation 1.4829 nats/char
(2.139 bits/char) after 2,000 steps; 874,881 parameters. Validation by
step: 1.6222 (500), 1.5256 (1,000), 1.4935 (1,500), 1.4829 (2,000). The
run took 20 min 46 s, but shared the 2 cores with test runs for most of
it (12.8k characters/s median), so that time is not representative; the
side-by-side benchmark (docs/benchmarks.md) gives the LSTM's speed.
For scale, a plain PyTorch 2x256 LSTM with a similar recipe reached 1.486
after 592 s on this machine (../shared/NOTES.md).
"""
from rnnlab import base_config
from rnnlab import recipes


def get_config(arg: str = ""):
  arg = recipes.parse_arg(arg, runlocal=False)
  c = base_config.get_config()
  c.model.cell = "lstm"
  if arg.runlocal:
    recipes.make_runlocal(c)
  return c
