"""The best GRU character LM on Tiny Shakespeare that the whole command
trains in 20 minutes on the slower of this project's two CPU families.

  python -m rnnlab.main --config=configs/gru_shakespeare_20min.py --workdir=runs/gru20
  python -m rnnlab.main --config=configs/gru_shakespeare_20min.py:runlocal --workdir=/tmp/gru20

The budget is a fixed number of steps (the schedule, and so the result, are
reproducible); train.max_seconds is only a safety net that ends the run
cleanly (evaluated, checkpointed) if a slow machine would overrun.

Work in progress (issue 18): the recipe is today the default GRU's
(configs/gru_shakespeare.py) and is replaced by the search's winner once
it is retrained with new seeds. The search (docs/char_budget.md), one
trial at a time, each at the same fixed step budget ("screen": 800 steps
of the default's 64 x 128 windows):

  python -m rnnlab.sweep --config=configs/gru_shakespeare_20min.py:screen \
      --root=runs/char20_screen --search=tpe --trials=16

Measured so far (2026-12-07, AMD EPYC Zen 4, each run pinned to one core
while the other ran other jobs, jax 0.10.2), validation nats/char as the
default config reports it (32 streams, state carried):
  - at the screen's 800 steps: the default recipe 1.5499; the search's
    best of the first 12 trials 1.4785 (learning rate 7.6e-3 instead of
    2e-3, dropout 0.127, the rest as the default); the 14th, 1.4599
    (stateful, 7.0e-3, dropout 0.05, weight decay 0.01, final 1%);
  - that setting at 2,200 steps (--config.train.steps=2200
    --config.optim.learning_rate=0.007567 --config.model.dropout_rate=0.1268):
    1.4526 at step 2,000 and 1.4489 at 2,200, against the default's 1.4697
    at its 2,000; with --config.train.order=stateful as well, 1.4462 at
    2,200. Not yet the 1.44 the issue asks for.
"""
from rnnlab import base_config
from rnnlab import recipes
from rnnlab.search import Choice, LogUniform, Uniform

# The screening budget: every trial trains this many steps, whatever it
# samples, so their validation losses compare at equal cost (the searched
# levers do not change the cost of a step).
SCREEN_STEPS = 800
# The budget (docs/char_budget.md: what 20 minutes hold on the AVX2 EPYC,
# with a margin); the second search stage trains every trial this long.
BUDGET_STEPS = 2200


def get_config(arg: str = ""):
  arg = recipes.parse_arg(arg, runlocal=False, screen=False, refine=False)
  c = base_config.get_config()
  c.model.cell = "gru"
  c.train.steps = BUDGET_STEPS
  c.train.eval_every = c.train.checkpoint_every = BUDGET_STEPS // 4
  c.train.max_seconds = 19 * 60.0  # the safety net; the budget is the steps
  if not (arg.screen or arg.refine):
    # The winner (docs/char_budget.md): stage 2's best trial, plus the
    # weight decay and weight averaging that its one-factor probes added.
    # The stages keep the default recipe that their trials ran from.
    c.train.order = "stateful"
    c.optim.learning_rate = 0.008053
    c.optim.final_lr_fraction = 0.01
    c.optim.weight_decay = 0.1
    c.optim.ema_decay = 0.995
    c.model.dropout_rate = 0.154
  if arg.refine:
    # Stage 2 trials run on one core each beside another, slower than the
    # budget's machine: no safety net, or a trial would stop short.
    c.train.order = "stateful"
    c.train.sample_every = 0
    c.train.max_seconds = 0.0
    # A healthy trial improves at every one of its four evaluations; one
    # that diverged (peak rate 1.06e-2: grad norm 1e7 from step 1,100)
    # stops at the next instead of spending the rest of the budget.
    c.train.patience = 1
  if arg.screen:
    c.train.steps = SCREEN_STEPS
    c.train.eval_every = c.train.checkpoint_every = SCREEN_STEPS // 4
    c.train.sample_every = 0
    c.train.max_seconds = 0.0
  if arg.runlocal:
    recipes.make_runlocal(c)
  return c


def get_search(arg: str = ""):
  """The levers that leave a step's cost unchanged at 2 x 256, batch 64 x
  128: rate, regularisers, optimizer and how windows are drawn.

  Stage 1 ("screen", 800 steps) searched them all. Stage 2 ("refine", the
  full budget) narrows to what stage 1 and its full-budget probes showed:
  stateful windows and b2 0.999 fixed, a high learning rate, and dropout
  from 0.1 up (the screen's short runs favoured too little of it)."""
  arg = recipes.parse_arg(arg, runlocal=False, screen=False, refine=False)
  if arg.refine:
    return {"optim.learning_rate": LogUniform(4e-3, 1.2e-2),
            "model.dropout_rate": Uniform(0.1, 0.3),
            "optim.weight_decay": Choice([0.0, 0.01, 0.1]),
            "optim.final_lr_fraction": Choice([0.01, 0.1])}
  return {"optim.learning_rate": LogUniform(1e-3, 8e-3),
          "model.dropout_rate": Uniform(0.0, 0.35),
          "optim.weight_decay": Choice([0.0, 0.01, 0.1]),
          "optim.b2": Choice([0.99, 0.999]),
          "optim.final_lr_fraction": Choice([0.01, 0.1]),
          "train.order": Choice(["random", "stateful"])}
