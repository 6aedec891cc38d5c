"""The base config: every key rnnlab reads, its default, meaning and rule.

Experiment configs under `configs/` start from `get_config()` (or a shared
recipe in `rnnlab/recipes.py`) and override what they need; code never calls
`config.get(key, default)`. Any key can be overridden on the command line,
e.g. `--config.train.steps=100`; a key that is not here is an error (configs
are locked).

Sections. `model`, `train`, `optim`, `eval` and `sample` are shared: each
of their keys means the same thing for every task that reads it. Keys of
one data family or task live in its own section, named for it: `text`
(char_lm, word_lm), `classify`, `forecast`, `seq2seq` and `synthetic`. So
no key changes meaning between tasks (docs/config.md lists them all).

Rules. Each key is declared with its default and a `Rule` (range, choices)
on one line; its type is the default's. A key without a rule must be a
free-form string listed in UNCHECKED. Choices kept in a table of a module
above this one (registered cells, models, data sources, ...) are `table`
rules, checked by `rnnlab.config_check`: this module imports no registry.
Checks that relate several keys of one task belong to that task's
`check_config` hook (rnnlab/tasks/base.py), called before any data is read.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import pathlib
import re
from typing import Any, Callable

import ml_collections

from rnnlab import registry
from rnnlab.errors import CheckpointError, UserError


@dataclasses.dataclass(frozen=True)
class Rule:
  """What a valid value of one key is, beyond its type.

  `text` completes "must be ..." in errors and docs. `test` is None for a
  `table` rule: the value must be a key of the table named `table`, which
  rnnlab.config_check resolves (config_check.TABLES).
  """
  text: str
  test: Callable[[Any], bool] | None = None
  table: str = ""
  choices: tuple[Any, ...] = ()


def _check(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
  """`test`, False instead of an exception (NaN, odd items)."""
  def safe(value) -> bool:
    try:
      return bool(test(value))
    except (TypeError, ValueError, re.error):
      return False
  return safe


positive = Rule("> 0", _check(lambda v: v > 0))
non_negative = Rule(">= 0", _check(lambda v: v >= 0))
fraction = Rule("in [0, 1]", _check(lambda v: 0 <= v <= 1))
# A dropout or zoneout probability, or a share of data that must leave
# something: 1 would drop everything (and divide by zero in inverted
# dropout).
rate = Rule("in [0, 1)", _check(lambda v: 0 <= v < 1))
finite = Rule("a finite number", _check(math.isfinite))
flag = Rule("True or False", lambda v: True)  # the type check is the rule


def one_of(*choices) -> Rule:
  return Rule("one of " + ", ".join(map(repr, choices)),
              _check(lambda v: v in choices), choices=choices)


def table(name: str) -> Rule:
  """A name registered in (or listed by) the module that owns `name`'s
  table; config_check.TABLES maps `name` to it."""
  return Rule(f"a registered {name}", table=name)


def items(text: str, test: Callable[[Any], bool], length: int | None = None
          ) -> Rule:
  """A tuple whose items each pass `test` (and of `length` items)."""
  size = f"{length} " if length is not None else ""
  return Rule(f"a tuple of {size}{text}",
              _check(lambda v: (length is None or len(v) == length) and
                     all(test(x) for x in v)))


non_empty_strings = items("non-empty strings",
                          lambda x: isinstance(x, str) and x != "")
regexes = items("regular expressions",
                lambda x: isinstance(x, str) and re.compile(x) is not None)


def is_int(x) -> bool:
  """An int that is not a bool."""
  return isinstance(x, int) and not isinstance(x, bool)


class _Section:
  """Collects one section's keys: defaults into a ConfigDict, rules into
  a dict, side by side at each `add`."""

  def __init__(self, prefix: str, rules: dict[str, Rule | None]):
    self.config = ml_collections.ConfigDict()
    self.prefix = prefix
    self.rules = rules

  def add(self, key: str, default, rule: Rule | None = None):
    self.config[key] = default
    self.rules[self.prefix + key] = rule


def _build() -> tuple[ml_collections.ConfigDict, dict[str, Rule | None]]:
  rules: dict[str, Rule | None] = {}
  c = _Section("", rules)
  c.add("seed", 0, non_negative)  # params init, data order, dropout, sampling
  c.add("task", "char_lm", table("task"))  # rnnlab.tasks.TASKS
  # Start from another run's newest checkpoint (rnnlab/transfer.py):
  # parameters matched by name and shape; a char LM's embedding and output
  # rows are remapped by character. "" = fresh initialisation.
  c.add("init_from", "")
  # Modules to import before any registry is read, for the cells, models,
  # tasks or optimizers they register (docs/extending.md): module names on
  # sys.path, or .py files relative to the working directory.
  c.add("imports", (), non_empty_strings)
  config = c.config

  # task="char_lm" / "word_lm" (rnnlab/tasks/char_lm.py, data/text.py).
  s = _Section("text.", rules)
  # source "file": $RNNLAB_DATA_DIR/<corpus>/input.txt, then the cache, then
  # a download; source "tfds": the TFDS dataset tiny_shakespeare (tfds extra).
  s.add("corpus", "tinyshakespeare")
  s.add("path", "")               # explicit UTF-8 text file; overrides corpus
  s.add("source", "file", one_of("file", "tfds"))
  s.add("tfds_data_dir", "")      # source "tfds": "" = $TFDS_DATA_DIR or
                                  # ~/tensorflow_datasets
  s.add("val_fraction", 0.1, rate)   # nanoGPT split: first 90% train, last
                                     # 10% val
  s.add("test_fraction", 0.0, rate)  # carved from the end, after val; 0 =
                                     # no test split
  s.add("vocab_size", 10000, positive)  # word_lm: most frequent words + <unk>
  config.text = s.config

  # task="classify" (rnnlab/tasks/classify.py, data/classification.py).
  s = _Section("classify.", rules)
  # "japanese_vowels" (sktime's package data), "tfds" (dataset tfds_name,
  # e.g. "imdb_reviews" or "glue/sst2", via tfds.data_source) or "csv".
  s.add("source", "japanese_vowels", table("classification source"))
  s.add("tfds_name", "imdb_reviews")
  s.add("train_split", "train")   # tfds split names
  s.add("val_split", "")          # "" = carved from train_split
  s.add("test_split", "test")     # glue/sst2: "validation" (test unlabelled)
  s.add("text_feature", "text")   # tfds feature names (glue/sst2: "sentence")
  s.add("label_feature", "label")
  s.add("tfds_data_dir", "")      # "" = $TFDS_DATA_DIR or ~/tensorflow_datasets
  # rnnlab's own TFDS datasets (tfds_name "rotten_tomatoes") read a file
  # fetched by hand from here; "" = $RNNLAB_DATA_DIR/<tfds_name>, else
  # TFDS's default manual directory (data/rotten_tomatoes.py).
  s.add("tfds_manual_dir", "")
  # source "csv": any CSV of labelled text, one example per row; labels
  # are strings. Without test_csv, a stratified test_fraction of train_csv
  # drawn with split_seed (fixed across config.seed) is the test split.
  s.add("train_csv", "")
  s.add("test_csv", "")
  s.add("text_column", "text")
  s.add("label_column", "label")
  s.add("test_fraction", 0.1, rate)
  s.add("split_seed", 0, non_negative)
  # Validation carved from the training split (stratified, seeded by
  # config.seed) when val_split is "".
  s.add("val_fraction", 0.1, rate)
  # "word" (lower-cased words, punctuation) or "char"; the vocabulary is the
  # vocab_size most frequent training tokens, <pad> and <unk> included.
  s.add("tokenization", "word", table("tokenization"))
  s.add("vocab_size", 10000, positive)
  s.add("max_tokens", 256, positive)  # longer texts are truncated
  s.add("pad_multiple", 16, positive)  # batch length rounded up: fewer
                                       # compiles
  s.add("bucket", True, flag)     # training batches of similar lengths
  # The classifier's head: "last" state of each direction, "mean", "max".
  s.add("pooling", "last", table("pooling"))
  # Real-valued frames: "dense" (to model.embed_dim) or "identity".
  s.add("input_projection", "dense", table("input projection"))
  # Tokens: each training token becomes <unk> with this probability.
  s.add("word_dropout", 0.0, rate)
  # > 1: that many classifiers trained side by side in one run (each its
  # own initialisation and dropout masks, the same batches); evaluation,
  # the best checkpoint and labelling use their mean class probabilities.
  s.add("ensemble_size", 1, positive)
  config.classify = s.config

  # task="forecast" (rnnlab/data/series.py, rnnlab/tasks/forecast.py): a
  # target series, and optionally other input columns, split in time order,
  # train first, then val, then test; scaling fitted on the train split only.
  s = _Section("forecast.", rules)
  # "sine", "co2", "sunspots", "msft", "csv"
  s.add("series", "sine", table("series"))
  s.add("csv", "")                # series "csv": path of the file
  # series "csv" and "msft": the target, the numeric column forecast (msft:
  # Open, High, Low, Close, Volume, log_return, log_range, log_volume).
  s.add("column", "")
  # series "csv" and "msft": the columns the model reads at each step, each
  # standardised with its own train-split mean and std; () = the target
  # alone. The baselines always use the target alone.
  s.add("input_columns", (), non_empty_strings)
  s.add("date_column", "")        # series "csv": sort rows by it; "" = file
                                  # order
  s.add("missing", "error", table("missing-value policy"))  # or "interpolate"
  s.add("num_points", 2000, positive)  # sine: x_t = sin(t/10) + U[-a, a]
  s.add("noise", 0.2, non_negative)    # sine: a
  s.add("noise_seed", 0, non_negative)  # sine: fixed across config.seed
  s.add("val_fraction", 0.15, rate)
  s.add("test_fraction", 0.15, rate)
  s.add("difference", False, flag)  # model x_t - x_{t-1} (trending series)
  s.add("window", 64, positive)   # input window (context) length
  s.add("horizon", 1, positive)   # forecasts per origin (direct multi-output)
  s.add("loss_positions", 1, positive)  # train on each window's last N
                                        # outputs (<= window)
  s.add("season", 0, non_negative)  # seasonal naive's period; 0 = none
  # ARIMA baseline (p, d, q)(P, D, Q, s), fitted on the train split.
  s.add("arima_order", (1, 0, 0),
        items("integers >= 0", lambda x: is_int(x) and x >= 0, length=3))
  s.add("arima_seasonal_order", (0, 0, 0, 0),
        items("integers >= 0", lambda x: is_int(x) and x >= 0, length=4))
  s.add("arima_trend", "c", table("arima trend"))  # "n", "c", "t", "ct"
  s.add("mase_lag", 1, positive)  # MASE scale: train MAE of x_{t-lag}
  # Decisions taken from the train split, each logged and written to the
  # run's forecast_scaler.json and forecast_test.json (configs/
  # gru_forecast_csv.py). auto_difference: set the differencing by ADF and
  # KPSS tests (then forecast.difference must stay False).
  s.add("auto_difference", False, flag)
  # With forecast.season 0: find the season in the train split's
  # autocorrelation (0 if none); a season > 0 is used as given.
  s.add("detect_season", False, flag)
  # > 0: window = min(forecast.window, fraction x train points), and
  # loss_positions shrinks in proportion; 0 = forecast.window as given.
  s.add("window_fraction", 0.0, rate)
  # Choose the ARIMA baseline's order, trend and seasonal terms by AIC on
  # the train split (then the arima_* keys must keep their defaults).
  s.add("arima_search", False, flag)
  config.forecast = s.config

  # task="seq2seq" (rnnlab/data/seq2seq.py, rnnlab/tasks/seq2seq.py):
  # generated problems, held-out sets disjoint from training.
  s = _Section("seq2seq.", rules)
  # "addition", "dates" or "numbers" (number words translated).
  s.add("problem", "addition", table("seq2seq problem"))
  s.add("max_digits", 3, positive)  # addition: operands below 10**max_digits
  s.add("locales", ("en_US", "de_DE", "fr_FR", "es_ES", "it_IT", "pt_BR",
                    "nl_NL"), non_empty_strings)  # dates: babel locales
  s.add("formats", ("full", "long", "medium", "numeric"),
        items("date formats", lambda x: x in ("full", "long", "medium",
                                               "numeric")))  # dates
  s.add("max_source_len", 48, positive)  # dates: longest rendering accepted
  # numbers: the values 0 .. max_value - 1 written out by num2words in the
  # source language, to be written in the target language.
  s.add("source_language", "fr", table("number language"))
  s.add("target_language", "en", table("number language"))
  s.add("max_value", 10000, positive)
  # Held-out examples (dates: days; numbers: values).
  s.add("num_val", 1000, non_negative)
  s.add("num_test", 2000, non_negative)
  # The decoder's attention over the encoder states (models/attention.py):
  # "none", "additive", "dot", "general", "scaled_dot".
  s.add("attention", "additive", table("seq2seq attention"))
  s.add("beam_size", 1, positive)  # >1 also reports beam-search accuracy
  s.add("attention_plots", 4, non_negative)  # test heatmaps in
                                             # <workdir>/attention
  config.seq2seq = s.config

  # task="synthetic" (rnnlab/data/synthetic.py): long-range memory tests.
  s = _Section("synthetic.", rules)
  s.add("problem", "adding", table("synthetic problem"))  # or "copy_memory"
  s.add("lag", 100, positive)     # adding: sequence length; copy_memory:
                                  # blanks between the symbols and delimiter
  s.add("copy_length", 10, positive)  # copy_memory: symbols to recall (S)
  s.add("alphabet", 8, positive)  # copy_memory: distinct symbols (A)
  s.add("num_val", 1000, non_negative)  # held-out sequences
  s.add("num_test", 2000, non_negative)
  config.synthetic = s.config

  # The model's architecture: every key means the same for each model that
  # reads it; a key of one cell or model says so.
  s = _Section("model.", rules)
  s.add("name", "rnn_lm", table("model"))  # rnnlab.models.MODELS
  s.add("cell", "gru", table("cell"))  # rnnlab.models.cells.CELLS
  s.add("hidden_size", 256, positive)
  s.add("num_layers", 2, positive)
  s.add("embedding", "learned", table("embedding"))  # "learned" table or
                                                     # "one_hot" (char-rnn)
  s.add("embed_dim", 64, positive)  # ignored for one_hot
  # N(0, std²) table, as PyTorch's nn.Embedding. Flax's default (std
  # 1/sqrt(E) = 0.125) learned slower here: val loss after 400 steps, GRU
  # 1.766 vs 1.666, LSTM 2.017 vs 1.749 (std 1.0).
  s.add("embed_init_std", 1.0, non_negative)
  s.add("dropout_rate", 0.1, rate)  # between layers and before the readout
  s.add("activation", "tanh", table("activation"))  # rnn only: tanh, relu
  s.add("forget_bias", 1.0, finite)  # lstm only: forget-gate bias init
  s.add("reset_after", True, flag)  # gru only: True = PyTorch/cuDNN, False =
                                    # chapter
  # attention_lm only: the score of its attention over its own last
  # attention_window hidden states (current included); models/attention.py.
  s.add("attention_score", "additive", table("attention score"))
  s.add("attention_window", 128, positive)
  # How the recurrence runs; each choice computes the same function (to
  # float32 rounding). "scan" (nn.scan, XLA autodiff), "fused" (custom-VJP
  # kernel, weight gradients as single matmuls after the loop;
  # models/fused.py), "native" (the fused split with its loops in C++ over
  # all cores; CPU, float32; rnnlab/native/recurrence.py; "native_avx2"
  # etc. name an instruction-set variant), "cudnn" (LSTM on a CUDA GPU,
  # cuDNN via jax.experimental.rnn, float32) or "auto": the fastest of
  # fused, scan and native on this machine's real training step, timed
  # once per machine and shape and cached (rnnlab/native/autotune.py,
  # `python -m rnnlab.native`); a resumed run keeps its first choice.
  s.add("implementation", "auto", table("implementation"))
  # "scan" implementation only (so not under "auto" on one CPU device):
  # "wavefront" runs all layers in one loop, layer l one step behind layer
  # l-1, so their steps can run on separate cores; or "layer_by_layer".
  s.add("layer_schedule", "wavefront", table("layer schedule"))
  # scan only: one matmul for all steps' input terms before the loop (True),
  # or the whole cell per step (False: faster here at hidden 256).
  s.add("hoist_input_projection", False, flag)
  s.add("unroll", 1, positive)    # time steps per loop iteration
  # Deep and regularised stacks (models/layers.py RecurrentStack); the
  # defaults are the plain stack, which keeps the wavefront fast path.
  s.add("hidden_sizes", (),       # per-layer sizes, e.g. (512, 256); () =
        items("integers > 0",     # hidden_size for all num_layers layers
              lambda x: is_int(x) and x > 0))
  s.add("residual", False, flag)  # add each layer's input to its output
                                  # (layers > 0 of equal width)
  s.add("layer_norm", False, flag)  # LayerNorm on each layer's output
  s.add("bidirectional", False, flag)  # encoders only: refused by language
                                       # models
  s.add("bidirectional_merge", "concat", table("bidirectional merge"))
  # Variational dropout (Gal & Ghahramani: one mask per sequence, shared
  # over time) of each layer's input, output, and H_{t-1} in the recurrent
  # matmuls; zoneout keeps each carry unit with this probability per step.
  s.add("input_dropout", 0.0, rate)
  s.add("output_dropout", 0.0, rate)
  s.add("recurrent_dropout", 0.0, rate)
  s.add("zoneout", 0.0, rate)
  # Compute dtype ("bfloat16" for mixed precision on GPU/TPU): carries, gate
  # pre-activations and logits stay float32. param_dtype is the stored
  # parameters' (keep float32 so that Adam's updates are not rounded away).
  s.add("dtype", "float32", table("dtype"))
  s.add("param_dtype", "float32", table("dtype"))
  config.model = s.config

  s = _Section("train.", rules)
  s.add("batch_size", 64, positive)
  s.add("seq_len", 128, positive)  # language models: BPTT length of each
                                   # window / chunk
  # Language models' batches: "random" windows (full BPTT within each), or
  # "stateful" truncated BPTT (char-rnn): the training text is cut into
  # batch_size contiguous streams, step k reads the k-th chunk of each, and
  # the hidden state carries across chunks (gradient stopped), reset at each
  # epoch boundary.
  s.add("order", "random", one_of("random", "stateful"))
  s.add("steps", 2000, positive)
  s.add("log_every", 50, positive)  # steps between metrics.jsonl/console
                                    # lines
  s.add("eval_every", 500, positive)  # steps between validation passes
  s.add("checkpoint_every", 500, positive)  # steps between checkpoints
  s.add("max_to_keep", 2, positive)  # checkpoints kept on disk
  s.add("sample_every", 1000, non_negative)  # steps between text samples
                                             # (language models); 0 = never
  s.add("progress_bar", True, flag)
  s.add("profile_steps", 0, non_negative)  # >0: JAX profiler trace of that
                                           # many steps
  # Early stopping on the first eval split's loss: stop after this many
  # evaluations without improvement; 0 = never. The best step is kept in
  # <workdir>/best/ whether or not early stopping is on.
  s.add("patience", 0, non_negative)
  s.add("min_delta", 0.0, non_negative)  # improvement smaller than this
                                         # does not count
  # A non-finite loss or gradient: "stop" (status diverged, last good
  # checkpoint kept) or "skip" the step (parameters and optimizer unchanged).
  s.add("on_nonfinite", "stop", one_of("stop", "skip"))
  # A safety net, not a budget (the budget is train.steps, which fixes the
  # schedule): once this many seconds have passed since train_and_evaluate
  # began, the run evaluates, samples, checkpoints and ends with status
  # "done" and time_limited true, short of train.steps; a rerun resumes with
  # a fresh allowance. 0 = no limit.
  s.add("max_seconds", 0.0, non_negative)
  config.train = s.config

  s = _Section("optim.", rules)
  s.add("name", "adam", table("optimizer"))  # rnnlab.optim.OPTIMIZERS
  s.add("learning_rate", 2e-3, positive)  # peak learning rate
  s.add("schedule", "warmup_cosine", table("schedule"))  # optim.SCHEDULES
  s.add("warmup_steps", 100, non_negative)
  s.add("final_lr_fraction", 0.1, fraction)  # cosine decays to this
                                             # fraction of peak
  # exponential: x decay_rate per epoch once decay_after_epochs have passed
  # (char-rnn: 0.97 after 10).
  s.add("decay_rate", 0.97, fraction)
  s.add("decay_after_epochs", 10, non_negative)
  # reduce_on_plateau: x plateau_factor when the validation loss has not
  # improved by plateau_threshold (relative) for plateau_patience evals.
  s.add("plateau_factor", 0.5, fraction)
  s.add("plateau_patience", 2, non_negative)
  s.add("plateau_threshold", 1e-4, non_negative)
  s.add("plateau_min_scale", 1e-3, fraction)  # never below this fraction of
                                              # the peak
  s.add("b1", 0.9, fraction)      # adam family; also sgd's momentum if > 0
  s.add("b2", 0.999, fraction)
  s.add("eps", 1e-8, non_negative)
  s.add("momentum", 0.0, non_negative)  # sgd (0 = plain SGD)
  s.add("nesterov", False, flag)  # sgd
  s.add("decay", 0.95, fraction)  # rmsprop: squared-gradient average
                                  # (char-rnn)
  # Decoupled weight decay (adamw; other optimizers add it as a separate
  # decoupled term), never applied to biases, norms or other 1-D parameters.
  s.add("weight_decay", 0.0, non_negative)
  s.add("clip", "global_norm", one_of("global_norm", "value"))
  s.add("clip_norm", 1.0, non_negative)  # global-norm threshold; 0 = off
  s.add("clip_value", 0.0, non_negative)  # clip="value": per-element bound
  # sparse_adam only: which parameters get the sparse (lazy) update; the
  # rest get plain Adam. Regexes on "/"-joined parameter paths.
  s.add("sparse_params", ("embed",), regexes)
  # Parameters held fixed (zero update), regexes on "/"-joined paths, e.g.
  # ("embed", "rnn/layers_0/") to freeze the embedding and the first layer.
  s.add("freeze", (), regexes)
  # > 0: evaluations, samples and the best checkpoint use an exponential
  # moving average of the weights with this decay (Polyak averaging; it
  # averages over about 1 / (1 - decay) steps). 0 = the weights as trained.
  s.add("ema_decay", 0.0, rate)
  config.optim = s.config

  s = _Section("eval.", rules)
  # Language models: parallel contiguous streams over a split, read in
  # chunks of seq_len with the state carried across chunks.
  s.add("num_streams", 32, positive)
  s.add("seq_len", 256, positive)
  # Tasks of separate examples (classify, forecast, seq2seq, synthetic):
  # examples per evaluation (seq2seq: decoding) batch.
  s.add("batch_size", 500, positive)
  config.eval = s.config

  # Language models' text samples (during training and rnnlab.sample).
  s = _Section("sample.", rules)
  s.add("prime", "\n")
  s.add("length", 500, non_negative)
  s.add("temperature", 0.8, non_negative)  # 0 = greedy (argmax)
  s.add("top_k", 0, non_negative)  # 0 = whole vocabulary
  config.sample = s.config
  return config, rules


def get_config() -> ml_collections.ConfigDict:
  """The defaults, locked: a config that sets a key not here (a typo, or a
  key that moved) fails at once instead of adding a key nothing reads."""
  config = _build()[0]
  config.lock()
  return config


# Every key's rule (None for the free-form strings of UNCHECKED).
RULES: dict[str, Rule | None] = _build()[1]

# Free-form strings: any value is accepted here, and what reads them says
# what is wrong (a missing file, an unknown TFDS name or split, ...).
UNCHECKED = (
    "init_from",                # a workdir path ("" = none)
    "text.corpus",              # a corpus name: a directory, cache or URL
    "text.path",                # a file path
    "text.tfds_data_dir",       # a directory path
    "classify.tfds_name",       # a TFDS dataset name (TFDS checks it)
    "classify.train_split",     # TFDS split names (TFDS checks them)
    "classify.val_split",
    "classify.test_split",
    "classify.text_feature",    # TFDS feature names (checked on read)
    "classify.label_feature",
    "classify.tfds_data_dir",   # directory paths
    "classify.tfds_manual_dir",
    "classify.train_csv",       # file paths ("" test_csv = carved)
    "classify.test_csv",
    "classify.text_column",     # CSV column names (checked on read)
    "classify.label_column",
    "forecast.csv",             # a file path
    "forecast.column",          # a column name (checked on read)
    "forecast.date_column",     # a CSV column name (checked on read)
    "sample.prime",             # any text to start samples from
)

# Keys of configs written before the sections (rnnlab up to commit
# dcfea1a): old name -> new name, or {task: new name} where the old key
# meant a different thing per task (an old key a task did not read is
# dropped). `from_saved` applies it to old runs; on the command line an old
# name is an error naming the new one (`renamed_key_error`).
MOVED: dict[str, str | dict[str, str]] = {
    "data.val_fraction": {"char_lm": "text.val_fraction",
                          "word_lm": "text.val_fraction",
                          "classify": "classify.val_fraction",
                          "forecast": "forecast.val_fraction"},
    # classify read data.name only with data.source "tfds" (upgrade_saved).
    "data.name": {"char_lm": "text.corpus", "word_lm": "text.corpus",
                  "classify": "classify.tfds_name"},
    "data.path": {"char_lm": "text.path", "word_lm": "text.path"},
    "data.source": {"char_lm": "text.source", "word_lm": "text.source",
                    "classify": "classify.source"},
    "data.test_fraction": {"char_lm": "text.test_fraction",
                           "word_lm": "text.test_fraction",
                           "forecast": "forecast.test_fraction"},
    "data.vocab_size": {"word_lm": "text.vocab_size",
                        "classify": "classify.vocab_size"},
    "data.problem": {"seq2seq": "seq2seq.problem",
                     "synthetic": "synthetic.problem"},
    "data.num_val": {"seq2seq": "seq2seq.num_val",
                     "synthetic": "synthetic.num_val"},
    "data.num_test": {"seq2seq": "seq2seq.num_test",
                      "synthetic": "synthetic.num_test"},
    **{f"data.{k}": f"seq2seq.{k}"
       for k in ("max_digits", "locales", "formats", "max_source_len")},
    **{f"data.{k}": f"synthetic.{k}" for k in ("lag", "copy_length",
                                               "alphabet")},
    **{f"data.{k}": f"classify.{k}"
       for k in ("train_split", "val_split", "test_split", "text_feature",
                 "label_feature", "tfds_data_dir", "tokenization",
                 "max_tokens", "pad_multiple", "bucket")},
    **{f"data.{k}": f"forecast.{k}"
       for k in ("series", "csv", "column", "missing", "num_points", "noise",
                 "noise_seed", "difference", "window", "horizon",
                 "loss_positions", "season")},
    **{f"eval.{k}": f"forecast.{k}"
       for k in ("arima_order", "arima_seasonal_order", "arima_trend",
                 "mase_lag")},
    "eval.beam_size": "seq2seq.beam_size",
    "eval.attention_plots": "seq2seq.attention_plots",
    "model.pooling": "classify.pooling",
    "model.input_projection": "classify.input_projection",
    "model.attention": {"seq2seq": "seq2seq.attention",
                        "char_lm": "model.attention_score",
                        "word_lm": "model.attention_score"},
}


def renamed_key_error(old: str) -> UserError | None:
  """The error for an old key name ("data.window"), or None if `old` was
  not renamed: one line naming the key(s) that replace it."""
  new = MOVED.get(old)
  if new is None:
    return None
  if isinstance(new, str):
    where = f"config.{new}"
  else:
    targets: dict[str, list[str]] = {}
    for task, key in new.items():
      targets.setdefault(key, []).append(task)
    where = " or ".join(f"config.{key} (task {', '.join(tasks)})"
                        for key, tasks in targets.items())
  return UserError(f"config.{old} was renamed: use {where} (the config "
                   "moved task-specific keys into sections; docs/config.md).")


def _get(config, dotted: str):
  node = config
  for part in dotted.split("."):
    try:
      node = node[part]
    except (KeyError, TypeError, AttributeError):
      raise (renamed_key_error(dotted) or UserError(
          f"The config has no key config.{dotted} (start from "
          "rnnlab.base_config.get_config()).")) from None
  return node


def leaves(node, prefix: str = ""):
  """(dotted key, value) of every leaf of a config, in order."""
  for key, value in node.items():
    if isinstance(value, ml_collections.ConfigDict):
      yield from leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def type_ok(value, default) -> bool:
  """Whether `value` has the type of the default (bools are not numbers)."""
  if isinstance(default, bool):
    return isinstance(value, bool)
  if isinstance(default, int):
    return is_int(value)
  if isinstance(default, float):
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if isinstance(default, (tuple, list)):
    return isinstance(value, (tuple, list))
  return isinstance(value, type(default))


def _type_name(default) -> str:
  if isinstance(default, bool):
    return "a bool"
  if isinstance(default, float):
    return "a number"
  if isinstance(default, (tuple, list)):
    return "a tuple"
  return {int: "an integer", str: "a string"}.get(type(default),
                                                   type(default).__name__)


def _rule_error(key: str, value, rule: Rule) -> UserError:
  shown = tuple(value) if isinstance(value, list) else value
  if rule.choices:
    return UserError(f"Unknown config.{key}={shown!r}. Valid choices: "
                     f"{', '.join(map(repr, rule.choices))}.")
  return UserError(f"config.{key}={shown!r} must be {rule.text}.")


def check_types(config: ml_collections.ConfigDict):
  """Raises UserError naming the first key whose value has the wrong type
  (ml_collections lets None, and True for an int, through)."""
  for key, default in leaves(get_config()):
    value = _get(config, key)
    if not type_ok(value, default):
      raise UserError(f"config.{key}={value!r} must be {_type_name(default)} "
                      f"(default {default!r}).")


def validate(config: ml_collections.ConfigDict):
  """Raises UserError naming the first key of the wrong type or against its
  rule. `table` rules (registered names) and each task's own checks are
  applied above the registries, by `rnnlab.config_check.validate`."""
  check_types(config)
  registry.import_modules(config.imports)  # before a registry is read
  for key, rule in RULES.items():
    if rule is not None and rule.test is not None:
      value = _get(config, key)
      if not rule.test(value):
        raise _rule_error(key, value, rule)


def check_table(config: ml_collections.ConfigDict, key: str, what: str,
                choices) -> None:
  """UserError unless config.<key> is one of `choices` (the keys of the
  table of `what`, e.g. the registered cells)."""
  value = _get(config, key)
  if not isinstance(value, str) or value not in choices:
    raise UserError(f"Unknown {what} {value!r} (config.{key}). Valid "
                    f"choices: {', '.join(map(repr, sorted(choices)))}.")


def load_file(spec: str) -> ml_collections.ConfigDict:
  """The config of "path.py[:arg]", as --config=path.py:arg gives it."""
  path, _, arg = spec.partition(":")
  file = pathlib.Path(path)
  if not file.is_file():
    raise UserError(f"Config file {path!r} not found. Configs are Python "
                    "files with get_config(arg), e.g. "
                    "configs/gru_shakespeare.py.")
  module_spec = importlib.util.spec_from_file_location(f"_config_{file.stem}",
                                                       file)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


# Keys a resumed run may change: how long it runs, how often it reports, and
# how the same function is computed. Any other difference means the workdir
# holds another experiment, and resuming it is refused (`resume_conflicts`).
RESUMABLE_KEYS = (
    "train.steps", "train.log_every", "train.eval_every",
    "train.checkpoint_every", "train.max_to_keep", "train.sample_every",
    "train.progress_bar", "train.profile_steps", "train.max_seconds",
    "seq2seq.attention_plots",
    "model.implementation", "model.layer_schedule",
    "model.hoist_input_projection", "model.unroll", "init_from",
    "sample.prime", "sample.length", "sample.temperature", "sample.top_k")


def _as_json(value):
  return json.loads(json.dumps(value))  # tuples and lists compare equal


def resume_conflicts(saved: dict, config: ml_collections.ConfigDict
                     ) -> list[str]:
  """"key: saved -> new" for each key outside RESUMABLE_KEYS in which
  `config` differs from a run's saved config.json (`saved`)."""
  old = dict(leaves(from_saved(saved)))
  return [f"{key}: {old[key]!r} -> {value!r}"
          for key, value in leaves(config)
          if key in old and key not in RESUMABLE_KEYS and
          _as_json(old[key]) != _as_json(value)]


def upgrade_saved(saved: dict) -> dict:
  """A config.json written before the sections (flat data.* keys), with
  each old key moved to its new name (MOVED) for the run's task; keys the
  run's task did not read are dropped. Newer files come back unchanged."""
  if not isinstance(saved, dict):
    return saved
  task = saved.get("task")
  upgraded = {k: dict(v) if isinstance(v, dict) else v
              for k, v in saved.items()}
  for old, new in MOVED.items():
    section, _, key = old.partition(".")
    values = upgraded.get(section)
    if not isinstance(values, dict) or key not in values:
      continue
    value = values.pop(key)
    target = new if isinstance(new, str) else new.get(task)
    if (old == "data.name" and task == "classify" and
        saved["data"].get("source") != "tfds"):
      target = None  # the char LM's default corpus name, unread
    if target is None:
      continue
    new_section, _, new_key = target.partition(".")
    upgraded.setdefault(new_section, {})[new_key] = value
  if upgraded.get("data") == {}:
    del upgraded["data"]
  return upgraded


def from_saved(saved: dict) -> ml_collections.ConfigDict:
  """A run's config.json on top of today's defaults.

  Keys added to rnnlab after the run was made take their defaults, keys
  that moved are read from their old names (`upgrade_saved`), so older runs
  stay loadable; keys rnnlab no longer has are dropped.
  """
  config = get_config()

  def merge(node, values, prefix):
    if not isinstance(values, dict):
      raise CheckpointError(f"Saved config: "
                            f"{prefix.rstrip('.') or 'the config'} must be "
                            f"a JSON object, got {values!r}.")
    for key, value in values.items():
      if key not in node:
        continue
      if isinstance(node[key], ml_collections.ConfigDict):
        merge(node[key], value, f"{prefix}{key}.")
        continue
      try:
        node[key] = value
      except (TypeError, ValueError):  # ml_collections' type check
        raise CheckpointError(
            f"Saved config: config.{prefix}{key}={value!r} must be "
            f"{_type_name(node[key])} (default {node[key]!r}).") from None

  merge(config, upgrade_saved(saved), "")
  registry.import_modules(config.imports)  # a saved run names its cells
  return config
