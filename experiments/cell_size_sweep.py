"""Sweep: cell (RNN, LSTM, GRU) x hidden size (128, 256) on Tiny Shakespeare.

A config file with a sweep beside it (big_vision style), run by rnnlab.sweep:

  python -m rnnlab.sweep --config=experiments/cell_size_sweep.py \
      --root=runs/cell_size_sweep --metric=val/loss
  ./launch.sh slurm-sweep --parallel=6 -- \
      --config=experiments/cell_size_sweep.py --root=runs/cell_size_sweep
  python -m rnnlab.sweep --config=experiments/cell_size_sweep.py:runlocal \
      --root=/tmp/sweep                               # seconds, a smoke test

The budget is small on purpose (600 steps of 32 x 128 characters, 2.5M
characters per trial, 2 layers): it ranks the cells early in training, not
at convergence. Report and measurements: docs/cell_size_sweep.md.
"""
from rnnlab import base_config
from rnnlab import recipes


def get_config(arg: str = ""):
  arg = recipes.parse_arg(arg, runlocal=False)
  c = base_config.get_config()
  c.model.cell = "gru"
  c.model.hidden_size = 256
  c.train.batch_size = 32
  c.train.steps = 600
  c.train.log_every = 50
  c.train.eval_every = 100
  c.train.checkpoint_every = 300
  c.train.sample_every = 0
  c.optim.warmup_steps = 50
  if arg.runlocal:
    recipes.make_runlocal(c)
  return c


def get_sweep(arg: str = ""):
  del arg
  return {"model.cell": ["rnn", "lstm", "gru"], "model.hidden_size": [128, 256]}
