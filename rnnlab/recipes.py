"""What configs/*.py share: `parse_arg` and the recipes of config families.

A config file is `get_config(arg)`; the recipes here hold what several of
them have in common (big_vision keeps the same in configs/common.py), so a
config states only its own keys:

    from rnnlab import recipes

    def get_config(arg: str = ""):
      arg = recipes.parse_arg(arg, runlocal=False)
      c = recipes.forecast_config("sine", "gru")
      c.forecast.window = 64
      if arg.runlocal:
        recipes.make_forecast_runlocal(c)
      return c

Nothing in the library imports this module: the trainer reads configs, not
recipes.
"""
from __future__ import annotations

from typing import Any

import ml_collections

from rnnlab import base_config
from rnnlab.errors import UserError
from rnnlab.models import cells
from rnnlab.models import classifier
from rnnlab.models import seq2seq
from rnnlab.registry import lookup

_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no", "")


def parse_arg(arg: str | None, **spec) -> ml_collections.ConfigDict:
  """A config's arg, e.g. "cell=lstm,lag=50,runlocal", as named values.

  `spec` names each option with its default. A bool default makes a flag,
  set by its bare name ("runlocal") or by name=true/false; any other
  default makes a key given as key=value, converted to the default's type,
  or by the function of a (default, convert) pair, which raises UserError
  on a bad value. Unknown names are a UserError listing the valid ones.

      arg = parse_arg(arg, runlocal=False, cell=("gru", cell_name))
      if arg.runlocal: ...
  """
  defaults = {k: v[0] if isinstance(v, tuple) else v for k, v in spec.items()}
  flags = [k for k, v in defaults.items() if isinstance(v, bool)]
  keys = [k for k in spec if k not in flags]
  items = [a for a in (arg or "").split(",") if a]
  # Without keys, "a=b" is just an unknown flag.
  unknown = sorted(a for a in items
                   if a not in flags and ("=" not in a or not keys))
  if unknown:
    raise UserError(f"Unknown config arg {unknown!r}. Valid choices: "
                    f"{', '.join(flags)}.")
  values = dict(defaults)
  for item in items:
    key, has_value, value = item.partition("=")
    if not has_value:
      values[key] = True
    elif key not in spec:
      raise UserError(
          f"Unknown config arg key {key!r} in {item!r}. Valid keys: "
          f"{', '.join(keys)} (and the flags {', '.join(flags)}).")
    else:
      values[key] = _convert(key, value, spec[key])
  return ml_collections.ConfigDict(values)


def _convert(key: str, value: str, spec) -> Any:
  if isinstance(spec, tuple):
    return spec[1](value)
  if isinstance(spec, bool):
    if value.lower() not in _TRUE + _FALSE:
      raise UserError(f"Config arg {key}={value!r} must be true or false.")
    return value.lower() in _TRUE
  try:
    return type(spec)(value)
  except ValueError:
    raise UserError(f"Config arg {key}={value!r} must be "
                    f"{type(spec).__name__}, like {spec!r}.") from None


def cell_name(value: str) -> str:
  """A parse_arg converter: a registered cell name."""
  lookup(cells.CELLS, value, "cell")
  return value


def _pooling_name(value: str) -> str:
  lookup({p: p for p in classifier.POOLINGS}, value, "pooling")
  return value


def _lag(value: str) -> int:
  if not value.isdigit() or int(value) < 1:
    raise UserError(f"Config arg lag={value!r} must be a positive integer, "
                    "e.g. lag=100.")
  return int(value)


# --- character and word LMs --------------------------------------------------

def _smoke_schedule(c: ml_collections.ConfigDict):
  """The step counts of every recipe's runlocal variant: 20 steps of 8
  examples, logged every 5, evaluated and checkpointed every 10."""
  c.train.batch_size, c.train.steps, c.train.log_every = 8, 20, 5
  c.train.eval_every = c.train.checkpoint_every = 10
  c.optim.warmup_steps = 2


def make_runlocal(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks a char-LM config to a seconds-long smoke run (tests, CI)."""
  c.model.hidden_size = 32
  c.model.embed_dim = 16
  c.train.batch_size = 8
  c.train.seq_len = 32
  c.train.steps = 20
  c.train.log_every = 5
  c.train.eval_every = 10
  c.train.checkpoint_every = 10
  c.train.sample_every = 20
  c.optim.warmup_steps = min(c.optim.warmup_steps, 2)
  c.sample.length = 50
  return c


# --- seq2seq -----------------------------------------------------------------

def seq2seq_config(problem: str, arg: str, batch_size: int = 64
                   ) -> ml_collections.ConfigDict:
  """The shared recipe of configs/*_seq2seq_*.py: a bidirectional GRU
  encoder whose two directions are summed (outputs [B, S, 128], as wide as
  the decoder) and a GRU decoder (hidden 128) with attention, batches of
  `batch_size`.

  arg: the attention ("none", "additive", "dot", "general", "scaled_dot";
  default additive) and/or "runlocal", comma-separated. Every attention
  gets the same encoder: summing the directions gives the dot-product
  scores keys as wide as their queries, and both directions matter (an
  addition's digit needs the carry from the digits to its right, which a
  unidirectional encoder has not read yet: docs/attention.md).
  """
  arg = parse_arg(arg, runlocal=False,
                  **{kind: False for kind in seq2seq.ATTENTION_CHOICES})
  c = base_config.get_config()
  c.task, c.seq2seq.problem = "seq2seq", problem
  c.model.name, c.model.cell = "seq2seq", "gru"
  c.model.hidden_size, c.model.num_layers, c.model.embed_dim = 128, 1, 32
  c.model.bidirectional, c.model.bidirectional_merge = True, "sum"
  c.model.dropout_rate = 0.0
  c.seq2seq.attention = "additive"
  for kind in seq2seq.ATTENTION_CHOICES:
    if arg[kind]:
      c.seq2seq.attention = kind
  c.train.batch_size = batch_size
  c.train.steps = 3000
  c.train.log_every = 100
  c.train.eval_every = c.train.checkpoint_every = c.train.sample_every = 1000
  c.optim.learning_rate = 3e-3
  c.optim.final_lr_fraction = 0.05
  c.seq2seq.beam_size = 4
  if arg.runlocal:
    c.model.hidden_size, c.model.embed_dim = 16, 8
    c.seq2seq.num_val = c.seq2seq.num_test = 40
    _smoke_schedule(c)
    c.train.sample_every = 20
    c.seq2seq.beam_size = 2
  return c


# --- classification ----------------------------------------------------------

def japanese_vowels_config(arg: str, cell: str = "gru"
                           ) -> ml_collections.ConfigDict:
  """The recipe of configs/*_japanese_vowels.py: one bidirectional layer of
  64 units per direction over the 12 standardised LPC coefficients, the last
  state of each direction -> Dense(9). 600 steps of 32 (about 90 epochs of
  the 216 training utterances), Adam 3e-3 with warm-up and cosine decay,
  clip 1.0; validation (54 utterances, 6 per speaker, carved from the 270
  training ones) every 25 steps picks the best checkpoint.

  arg: comma-separated "cell=<rnn|lstm|gru>", "pooling=<last|mean|max>",
  "bidirectional=<true|false>" (default true), "runlocal".
  """
  arg = classify_arg(arg, cell)
  c = base_config.get_config()
  c.task = "classify"
  c.classify.source = "japanese_vowels"
  c.classify.val_fraction = 0.2
  c.classify.pad_multiple = 8
  c.classify.bucket = False  # lengths 7-26: little padding to save
  c.model.name = "classifier"
  c.model.cell = arg.cell
  c.classify.pooling = arg.pooling
  c.classify.input_projection = "identity"
  c.model.bidirectional = arg.bidirectional
  c.model.hidden_size, c.model.num_layers = 64, 1
  c.model.dropout_rate = 0.2
  c.train.batch_size = 32
  c.train.steps = 600
  c.train.log_every = 25
  c.train.eval_every = c.train.checkpoint_every = 25
  c.train.sample_every = 0
  c.optim.learning_rate = 3e-3
  c.optim.warmup_steps = 30
  c.optim.final_lr_fraction = 0.05
  c.eval.batch_size = 500
  if arg.runlocal:
    c.model.hidden_size = 8
    _smoke_schedule(c)
  return c


def text_config(name: str, arg: str, cell: str = "gru", *,
                text_feature: str = "text", test_split: str = "test",
                val_split: str = "") -> ml_collections.ConfigDict:
  """The recipe of TFDS sentiment configs (configs/gru_sst2.py): word
  tokens (20,000 most frequent), 64-dim embedding, one bidirectional layer of
  128 units per direction, the last state of each direction -> Dense.
  arg: as `japanese_vowels_config`."""
  parsed = classify_arg(arg, cell)
  c = text_recipe(name, parsed, text_feature=text_feature,
                  test_split=test_split, val_split=val_split)
  if parsed.runlocal:
    make_text_runlocal(c)
  return c


def classify_arg(arg: str, cell: str, pooling: str = "last"
                 ) -> ml_collections.ConfigDict:
  """A classification config's arg: "cell=<rnn|lstm|gru>",
  "pooling=<last|mean|max>", "bidirectional=<true|false>" (default true),
  "runlocal"; the defaults are `cell` and `pooling`."""
  return parse_arg(arg, runlocal=False, cell=(cell, cell_name),
                   pooling=(pooling, _pooling_name), bidirectional=True)


def text_recipe(name: str, arg: ml_collections.ConfigDict, *,
                text_feature: str = "text", test_split: str = "test",
                val_split: str = "") -> ml_collections.ConfigDict:
  """`text_config` before its runlocal shrink, for a parsed `arg`
  (`classify_arg`): configs that change the recipe do so, then call
  `make_text_runlocal`."""
  c = base_config.get_config()
  c.task = "classify"
  c.classify.source, c.classify.tfds_name = "tfds", name
  c.classify.text_feature, c.classify.test_split = text_feature, test_split
  c.classify.val_split = val_split
  c.classify.val_fraction = 0.05
  c.classify.tokenization = "word"
  c.classify.vocab_size = 20000
  c.classify.max_tokens = 128
  c.model.name = "classifier"
  c.model.cell = arg.cell
  c.classify.pooling = arg.pooling
  c.model.bidirectional = arg.bidirectional
  c.model.hidden_size, c.model.num_layers, c.model.embed_dim = 128, 1, 64
  c.model.embed_init_std = 0.1
  c.model.dropout_rate = 0.3
  c.train.batch_size = 64
  c.train.steps = 3000
  c.train.log_every = 50
  c.train.eval_every = c.train.checkpoint_every = 250
  c.train.sample_every = 0
  c.train.patience = 4
  c.optim.learning_rate = 2e-3
  c.eval.batch_size = 500
  return c


def make_text_runlocal(c: ml_collections.ConfigDict
                       ) -> ml_collections.ConfigDict:
  """Shrinks a text-classification config to a seconds-long smoke run."""
  c.classify.vocab_size, c.classify.max_tokens = 500, 32
  c.model.hidden_size, c.model.embed_dim = 16, 8
  _smoke_schedule(c)
  c.train.patience = 0
  c.eval.batch_size = 64
  return c


# --- forecasting -------------------------------------------------------------

def forecast_config(series: str, cell: str) -> ml_collections.ConfigDict:
  """The shared recipe of configs/*_forecast_*.py before their own keys:
  one recurrent layer of 64, no dropout, a 70/15/15 split, batches of 64,
  Adam 3e-3 with 100 warm-up steps and cosine decay to 5%, clip 1.0."""
  c = base_config.get_config()
  c.task, c.forecast.series = "forecast", series
  c.forecast.val_fraction, c.forecast.test_fraction = 0.15, 0.15
  c.model.name, c.model.cell = "sequence", cell
  c.model.hidden_size, c.model.num_layers = 64, 1
  c.model.dropout_rate = 0.0
  c.train.batch_size = 64
  c.train.steps = 3000
  c.train.log_every = 100
  c.train.eval_every = c.train.checkpoint_every = 500
  c.train.sample_every = 0
  c.optim.learning_rate = 3e-3
  c.optim.warmup_steps = 100
  c.optim.final_lr_fraction = 0.05
  c.eval.batch_size = 1000
  return c


def make_forecast_runlocal(c: ml_collections.ConfigDict
                           ) -> ml_collections.ConfigDict:
  """Shrinks a forecasting config to a seconds-long smoke run (the ARIMA
  baseline stays: its fit takes a second or two)."""
  c.model.hidden_size = 8
  c.forecast.window = min(c.forecast.window, 32)
  c.forecast.loss_positions = min(c.forecast.loss_positions, c.forecast.window)
  _smoke_schedule(c)
  return c


def make_forecast_auto(c: ml_collections.ConfigDict
                       ) -> ml_collections.ConfigDict:
  """The recipe of configs/gru_forecast_csv.py, for a series no config was
  tuned for: differencing, the season, the window and the ARIMA baseline's
  order decided from the train split (forecast.auto_difference,
  detect_season, window_fraction 0.25, arima_search), and training that
  stops on validation (eval every 50 steps, patience 8, up to 2,000 steps)
  with the reports of the checkpoint chosen there. One GRU layer of 16
  over windows of up to 64, loss on the last half of each, Adam 1e-3."""
  c.forecast.auto_difference = True
  c.forecast.difference = False
  c.forecast.detect_season = True
  c.forecast.arima_search = True
  c.forecast.window, c.forecast.loss_positions = 64, 32
  c.forecast.window_fraction = 0.25
  c.model.hidden_size = 16
  c.train.steps = 2000
  c.train.eval_every = c.train.checkpoint_every = 50
  c.train.log_every = 50
  c.train.patience = 8
  c.optim.learning_rate = 1e-3
  return c


# The targets of configs/gru_forecast_msft.py: the next day's log return,
# or the next close (forecast as a first difference added to the last close).
MSFT_TARGETS = {"return": "log_return", "close": "Close"}


def msft_target(value: str) -> str:
  """A parse_arg converter: a key of MSFT_TARGETS."""
  lookup({k: k for k in MSFT_TARGETS}, value, "msft target (target=...)")
  return value


# --- synthetic long-range memory problems ------------------------------------

def synthetic_config(problem: str, arg: str, *, cell: str = "lstm",
                     lag: int = 100) -> ml_collections.ConfigDict:
  """The shared recipe of configs/*_adding.py and *_copy_memory.py.

  One recurrent layer of 64 units and a linear readout, no dropout, Adam
  with warm-up and cosine decay, gradient clipping at global norm 1, 4,000
  steps: experiments/lag_sweep.py runs 24 of these in about 40 minutes on
  one core.
  arg: comma-separated "cell=<rnn|lstm|gru>", "lag=<int>", "runlocal"; the
  defaults are `cell` and `lag`. runlocal: a seconds-long smoke run (hidden
  16, lag at most 10, 20 steps of 8 sequences, 64-example eval sets).
  """
  arg = parse_arg(arg, runlocal=False, cell=(cell, cell_name),
                  lag=(lag, _lag))
  c = base_config.get_config()
  c.task, c.synthetic.problem = "synthetic", problem
  c.synthetic.lag = arg.lag
  c.synthetic.num_val, c.synthetic.num_test = 1000, 2000
  c.model.name = "sequence"
  c.model.cell = arg.cell
  c.model.hidden_size, c.model.num_layers = 64, 1
  c.model.dropout_rate = 0.0
  c.train.batch_size = 64
  c.train.steps = 4000
  c.train.log_every = 100
  c.train.eval_every = c.train.checkpoint_every = 250
  c.train.sample_every = 0
  c.optim.learning_rate = 2e-3
  c.optim.warmup_steps = 100
  c.optim.final_lr_fraction = 0.05
  c.eval.batch_size = 1000
  if arg.runlocal:
    c.model.hidden_size = 16
    c.synthetic.lag = min(c.synthetic.lag, 10)
    c.synthetic.num_val = c.synthetic.num_test = 64
    _smoke_schedule(c)
  return c
