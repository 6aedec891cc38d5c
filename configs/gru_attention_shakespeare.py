"""Attention GRU character LM on Tiny Shakespeare: the default GRU LM whose
output layer also sees scaled dot-product attention over its own last 128
hidden states (causal, current state included; models/lm.py AttentionLM).

  python -m rnnlab.main --config=configs/gru_attention_shakespeare.py --workdir=runs/gru_attention
  python -m rnnlab.main --config=configs/gru_attention_shakespeare.py:runlocal --workdir=/tmp/gru_attention

Same recipe, data path and evaluation as configs/gru_shakespeare.py, so the
two compare directly; STEPS is set so that both train for about the same
time on this machine.

Measured (2026-11-26, this 2-core CPU machine, jax 0.10.2, the first command
above with RNNLAB_DATA_DIR=../shared/data): validation 1.4599 nats/char
(2.106 bits/char) after 1,400 steps, 743 s of training (15.3k characters/s)
and 12 min 46 s wall clock for the whole command; 793,217 parameters.
Validation by step: 1.5404 (500), 1.4760 (1,000), 1.4599 (1,400). The
plain GRU config, same day and machine: 1.4655 after 2,000 steps and 742 s
of training (22.2k characters/s). At equal training time the attention LM
is 0.006 nats/char better; evaluation attends over the last 128 states
across chunk boundaries, as in training and sampling.
"""
from rnnlab import base_config
from rnnlab import recipes

STEPS = 1400  # ~ the plain GRU config's 2,000 steps of training time here


def get_config(arg: str = ""):
  arg = recipes.parse_arg(arg, runlocal=False)
  c = base_config.get_config()
  c.model.cell = "gru"
  c.model.name = "attention_lm"
  c.model.attention_score = "scaled_dot"
  c.model.attention_window = 128
  c.train.steps = STEPS
  if arg.runlocal:
    recipes.make_runlocal(c)
  return c
