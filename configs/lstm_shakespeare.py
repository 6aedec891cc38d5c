"""LSTM character LM on Tiny Shakespeare.

  python -m rnnlab.main --config=configs/lstm_shakespeare.py --workdir=runs/lstm
  python -m rnnlab.main --config=configs/lstm_shakespeare.py:runlocal \
      --workdir=/tmp/lstm    # a seconds-long smoke run

2 x 256 LSTM (forget-gate bias 1.0), 64-dim embedding, dropout 0.1, batches of 64
random 128-character windows, Adam 2e-3 with 100 warm-up steps and cosine
decay to 2e-4, clip 1.0. Split: first 90% train / last 10% validation.

Measured: RESULT_PLACEHOLDER
"""
from rnnlab import base_config


def get_config(arg: str = ""):
  c = base_config.get_config()
  c.model.cell = "lstm"
  c.model.hidden_size = 256
  c.model.num_layers = 2
  c.model.dropout_rate = 0.1
  c.optim.learning_rate = 2e-3
  c.optim.schedule = "warmup_cosine"
  c.optim.warmup_steps = 100
  c.train.steps = 3000
  if "runlocal" in base_config.parse_arg(arg):
    base_config.make_runlocal(c)
  return c
