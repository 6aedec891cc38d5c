"""Deep GRU character LM on Tiny Shakespeare: 3 x 256 GRU layers with
residual connections and layer normalisation between them.

  python -m rnnlab.main --config=configs/gru_deep_shakespeare.py --workdir=runs/gru_deep
  python -m rnnlab.main --config=configs/gru_deep_shakespeare.py:runlocal --workdir=/tmp/gru_deep

Otherwise the recipe of configs/gru_shakespeare.py, for 1,000 steps (the
deep stack runs layer by layer: the wavefront schedule covers the plain
stack only).

Measured (2026-11-26, this 2-core CPU machine, jax 0.10.2, the first command
above with RNNLAB_DATA_DIR=../shared/data): validation 1.5019 nats/char
(2.167 bits/char) after 1,000 steps, in 11 min 11 s wall clock for the
whole command (12.2k characters/s); 1,057,665 parameters. Validation by
step: 1.5637 (500), 1.5019 (1,000). For comparison the 2-layer plain GRU
config had 1.4974 at its step 1,000 (of 2,000, so a different learning-
rate schedule) after about half the training time.
"""
from rnnlab import base_config
from rnnlab import recipes


def get_config(arg: str = ""):
  arg = recipes.parse_arg(arg, runlocal=False)
  c = base_config.get_config()
  c.model.cell = "gru"
  c.model.num_layers = 3
  c.model.residual = True
  c.model.layer_norm = True
  c.train.steps = 1000
  if arg.runlocal:
    recipes.make_runlocal(c)
  return c
