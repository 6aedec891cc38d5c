"""The base config: every key rnnlab reads, with its default and meaning.

Experiment configs under `configs/` start from `get_config()` (or a shared
recipe in `rnnlab/recipes.py`) and override what they need; code never calls
`config.get(key, default)`. Any key can be overridden on the command line,
e.g. `--config.train.steps=100`; a key that is not here is an error (configs
are locked). This module imports no registry: `rnnlab.config_check` checks
the registered names.
"""
from __future__ import annotations

import importlib.util
import json
import pathlib

import ml_collections

from rnnlab import registry
from rnnlab.errors import CheckpointError, UserError


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0                      # params init, data order, dropout, sampling
  c.task = "char_lm"              # rnnlab.tasks.TASKS
  # Start from another run's newest checkpoint (rnnlab/transfer.py):
  # parameters matched by name and shape; a char LM's embedding and output
  # rows are remapped by character. "" = fresh initialisation.
  c.init_from = ""
  # Modules to import before any registry is read, for the cells, models,
  # tasks or optimizers they register (docs/extending.md): module names on
  # sys.path, or .py files relative to the working directory.
  c.imports = ()

  c.data = ml_collections.ConfigDict()
  c.data.name = "tinyshakespeare"  # corpus name: $RNNLAB_DATA_DIR/<name>/input.txt
  c.data.path = ""                # explicit UTF-8 text file; overrides name
  c.data.source = "file"          # "file" or "tfds" (needs the tfds extra)
  c.data.val_fraction = 0.1       # nanoGPT split: first 90% train, last 10% val
  c.data.test_fraction = 0.0      # carved from the end, after val; 0 = no test
  c.data.vocab_size = 10000       # task="word_lm": most frequent words + <unk>
  # task="seq2seq" (rnnlab/data/seq2seq.py): generated problems.
  c.data.problem = "addition"     # "addition" or "dates"
  c.data.max_digits = 3           # addition: operands below 10**max_digits
  c.data.locales = ("en_US", "de_DE", "fr_FR", "es_ES", "it_IT", "pt_BR",
                    "nl_NL")      # dates: babel locales
  c.data.formats = ("full", "long", "medium", "numeric")  # dates
  c.data.max_source_len = 48      # dates: longest rendering accepted
  c.data.num_val = 1000           # held-out examples (dates: held-out days)
  c.data.num_test = 2000
  # task="synthetic" (rnnlab/data/synthetic.py): data.problem "adding" or
  # "copy_memory", long-range memory tests; num_val/num_test size their sets.
  c.data.lag = 100                # adding: sequence length; copy_memory:
                                  # blanks between the symbols and delimiter
  c.data.copy_length = 10         # copy_memory: symbols to recall (S)
  c.data.alphabet = 8             # copy_memory: distinct symbols (A)

  c.model = ml_collections.ConfigDict()
  c.model.name = "rnn_lm"         # rnnlab.models.MODELS
  c.model.cell = "gru"            # rnnlab.models.cells.CELLS: rnn, lstm, gru
  c.model.hidden_size = 256
  c.model.num_layers = 2
  c.model.embedding = "learned"   # "learned" table or "one_hot" (char-rnn)
  c.model.embed_dim = 64          # ignored for one_hot
  # N(0, std²) table, as PyTorch's nn.Embedding. Flax's default (std
  # 1/sqrt(E) = 0.125) learned slower here: val loss after 400 steps, GRU
  # 1.766 vs 1.666, LSTM 2.017 vs 1.749 (std 1.0).
  c.model.embed_init_std = 1.0
  c.model.dropout_rate = 0.1      # between layers and before the readout
  c.model.activation = "tanh"     # rnn only: "tanh" or "relu"
  c.model.forget_bias = 1.0       # lstm only: forget-gate bias init
  # seq2seq only: "none", "additive", "dot", "general", "scaled_dot"
  # (rnnlab/models/attention.py).
  c.model.attention = "additive"
  # attention_lm only: its attention span, in hidden states (current included).
  c.model.attention_window = 128
  c.model.reset_after = True      # gru only: True = PyTorch/cuDNN, False = chapter
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
  c.model.implementation = "auto"
  # "scan" implementation only (so not under "auto" on one CPU device):
  # "wavefront" runs all layers in one loop, layer l one step behind layer
  # l-1, so their steps can run on separate cores; or "layer_by_layer".
  c.model.layer_schedule = "wavefront"
  # scan only: one matmul for all steps' input terms before the loop (True),
  # or the whole cell per step (False: faster here at hidden 256).
  c.model.hoist_input_projection = False
  c.model.unroll = 1              # time steps per loop iteration
  # Deep and regularised stacks (models/layers.py RecurrentStack); the
  # defaults are the plain stack, which keeps the wavefront fast path.
  c.model.hidden_sizes = ()        # per-layer sizes, e.g. (512, 256); () =
                                   # hidden_size for all num_layers layers
  c.model.residual = False         # add each layer's input to its output
                                   # (layers > 0 of equal width)
  c.model.layer_norm = False       # LayerNorm on each layer's output
  c.model.bidirectional = False    # encoders only: refused by language models
  c.model.bidirectional_merge = "concat"  # or "sum"
  # Variational dropout (Gal & Ghahramani: one mask per sequence, shared
  # over time) of each layer's input, output, and H_{t-1} in the recurrent
  # matmuls; zoneout keeps each carry unit with this probability per step.
  c.model.input_dropout = 0.0
  c.model.output_dropout = 0.0
  c.model.recurrent_dropout = 0.0
  c.model.zoneout = 0.0
  # Compute dtype ("bfloat16" for mixed precision on GPU/TPU): carries, gate
  # pre-activations and logits stay float32. param_dtype is the stored
  # parameters' (keep float32 so that Adam's updates are not rounded away).
  c.model.dtype = "float32"
  c.model.param_dtype = "float32"
  # task="classify" (rnnlab/tasks/classify.py, data/classification.py):
  # data.source "japanese_vowels" (sktime's package data) or "tfds" (dataset
  # data.name, e.g. "imdb_reviews" or "glue/sst2", via tfds.data_source).
  # Validation is carved from the training split (data.val_fraction,
  # stratified, seeded by config.seed) unless data.val_split names a split.
  c.data.train_split = "train"    # tfds split names
  c.data.val_split = ""           # "" = carved from train_split
  c.data.test_split = "test"      # glue/sst2: "validation" (test unlabelled)
  c.data.text_feature = "text"    # tfds feature names (glue/sst2: "sentence")
  c.data.label_feature = "label"
  c.data.tfds_data_dir = ""       # "" = $TFDS_DATA_DIR or ~/tensorflow_datasets
  # "word" (lower-cased words, punctuation) or "char"; the vocabulary is the
  # data.vocab_size most frequent training tokens, <pad> and <unk> included.
  c.data.tokenization = "word"
  c.data.max_tokens = 256         # longer texts are truncated
  c.data.pad_multiple = 16        # batch length rounded up: fewer compiles
  c.data.bucket = True            # training batches of similar lengths
  c.model.pooling = "last"        # "last" state of each direction, "mean", "max"
  c.model.input_projection = "dense"  # real-valued frames: "dense" (to
                                      # model.embed_dim) or "identity"

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 64
  c.train.seq_len = 128           # BPTT length of each window / chunk
  # char_lm batches: "random" windows (full BPTT within each), or
  # "stateful" truncated BPTT (char-rnn): the training text is cut into
  # batch_size contiguous streams, step k reads the k-th chunk of each, and
  # the hidden state carries across chunks (gradient stopped), reset at each
  # epoch boundary.
  c.train.order = "random"
  c.train.steps = 2000
  c.train.log_every = 50          # steps between metrics.jsonl/console lines
  c.train.eval_every = 500        # steps between validation passes
  c.train.checkpoint_every = 500  # steps between checkpoints
  c.train.max_to_keep = 2         # checkpoints kept on disk
  c.train.sample_every = 1000     # steps between text samples; 0 = never
  c.train.progress_bar = True
  c.train.profile_steps = 0       # >0: JAX profiler trace of that many steps
  # Early stopping on the first eval split's loss: stop after this many
  # evaluations without improvement; 0 = never. The best step is kept in
  # <workdir>/best/ whether or not early stopping is on.
  c.train.patience = 0
  c.train.min_delta = 0.0         # improvement smaller than this does not count
  # A non-finite loss or gradient: "stop" (status diverged, last good
  # checkpoint kept) or "skip" the step (parameters and optimizer unchanged).
  c.train.on_nonfinite = "stop"

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "adam"           # rnnlab.optim.OPTIMIZERS
  c.optim.learning_rate = 2e-3    # peak learning rate
  c.optim.schedule = "warmup_cosine"  # rnnlab.optim.SCHEDULES
  c.optim.warmup_steps = 100
  c.optim.final_lr_fraction = 0.1  # cosine decays to this fraction of peak
  # exponential: x decay_rate per epoch once decay_after_epochs have passed
  # (char-rnn: 0.97 after 10).
  c.optim.decay_rate = 0.97
  c.optim.decay_after_epochs = 10
  # reduce_on_plateau: x plateau_factor when the validation loss has not
  # improved by plateau_threshold (relative) for plateau_patience evals.
  c.optim.plateau_factor = 0.5
  c.optim.plateau_patience = 2
  c.optim.plateau_threshold = 1e-4
  c.optim.plateau_min_scale = 1e-3  # never below this fraction of the peak
  c.optim.b1 = 0.9                # adam family; also sgd's momentum if > 0
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.momentum = 0.0          # sgd (0 = plain SGD)
  c.optim.nesterov = False        # sgd
  c.optim.decay = 0.95            # rmsprop: squared-gradient average (char-rnn)
  # Decoupled weight decay (adamw; other optimizers add it as a separate
  # decoupled term), never applied to biases, norms or other 1-D parameters.
  c.optim.weight_decay = 0.0
  c.optim.clip = "global_norm"    # "global_norm" or "value"
  c.optim.clip_norm = 1.0         # global-norm threshold; 0 = off
  c.optim.clip_value = 0.0        # clip="value": per-element bound
  # sparse_adam only: which parameters get the sparse (lazy) update; the
  # rest get plain Adam. Regexes on "/"-joined parameter paths.
  c.optim.sparse_params = ("embed",)
  # Parameters held fixed (zero update), regexes on "/"-joined paths, e.g.
  # ("embed", "rnn/layers_0/") to freeze the embedding and the first layer.
  c.optim.freeze = ()

  c.eval = ml_collections.ConfigDict()
  c.eval.num_streams = 32         # parallel contiguous streams over a split
  c.eval.seq_len = 256            # chunk length; state carries across chunks
  c.eval.batch_size = 500         # seq2seq: examples per decoding batch
  c.eval.beam_size = 1            # seq2seq: >1 also reports beam accuracy
  c.eval.attention_plots = 4      # seq2seq: test heatmaps in <workdir>/attention
  # task="forecast" (rnnlab/data/series.py, rnnlab/tasks/forecast.py): one
  # univariate series split in time order by data.val_fraction and
  # data.test_fraction; scaling fitted on the train split only.
  c.data.series = "sine"          # "sine", "co2", "sunspots" or "csv"
  c.data.csv = ""                 # csv: path of the file
  c.data.column = ""              # csv: the numeric column to forecast
  c.data.missing = "error"        # missing values: "error" or "interpolate"
  c.data.num_points = 2000        # sine: x_t = sin(t/10) + U[-noise, noise]
  c.data.noise = 0.2
  c.data.noise_seed = 0           # sine: fixed across config.seed
  c.data.difference = False       # model x_t - x_{t-1} (trending series)
  c.data.window = 64              # input window (context) length
  c.data.horizon = 1              # forecasts per origin (direct multi-output)
  c.data.loss_positions = 1       # train on each window's last N outputs
  c.data.season = 0               # seasonal naive's period; 0 = none
  c.eval.arima_order = (1, 0, 0)  # ARIMA baseline (p, d, q), fitted on train
  c.eval.arima_seasonal_order = (0, 0, 0, 0)  # (P, D, Q, s)
  c.eval.arima_trend = "c"        # statsmodels trend: "n", "c", "t", "ct"
  c.eval.mase_lag = 1             # MASE scale: train MAE of x_{t-lag}

  c.sample = ml_collections.ConfigDict()
  c.sample.prime = "\n"
  c.sample.length = 500
  c.sample.temperature = 0.8      # 0 = greedy (argmax)
  c.sample.top_k = 0              # 0 = whole vocabulary
  return c


POSITIVE_KEYS = (
    "model.hidden_size", "model.num_layers", "model.embed_dim", "model.unroll",
    "model.attention_window", "data.vocab_size",
    "train.batch_size", "train.seq_len", "train.log_every", "train.eval_every",
    "train.checkpoint_every", "train.max_to_keep", "eval.num_streams",
    "eval.seq_len", "eval.batch_size", "eval.beam_size",
    "optim.learning_rate", "train.steps", "data.window", "data.horizon",
    "data.loss_positions", "data.num_points", "data.max_digits",
    "data.max_source_len", "data.lag", "data.copy_length", "data.alphabet",
    "data.max_tokens", "data.pad_multiple", "eval.mase_lag")
NON_NEGATIVE_KEYS = (
    "train.sample_every", "train.profile_steps",
    "eval.attention_plots",
    "optim.warmup_steps",
    "optim.clip_norm", "optim.clip_value", "optim.weight_decay",
    "optim.momentum", "optim.decay_after_epochs", "optim.plateau_patience",
    "optim.plateau_threshold", "train.patience", "train.min_delta",
    "sample.temperature",
    "sample.top_k", "sample.length", "data.num_val", "data.num_test",
    "data.season", "data.noise", "model.embed_init_std", "optim.eps")
FRACTION_KEYS = ("model.dropout_rate", "model.input_dropout",
                 "model.output_dropout", "model.recurrent_dropout",
                 "model.zoneout", "optim.final_lr_fraction", "optim.decay_rate",
                 "optim.plateau_factor", "optim.plateau_min_scale",
                 "optim.decay", "optim.b1", "optim.b2", "data.val_fraction",
                 "data.test_fraction")


# Keys with a fixed set of values.
CHOICE_KEYS = {
    "train.order": ("random", "stateful"),
    "train.on_nonfinite": ("stop", "skip"),
    "optim.clip": ("global_norm", "value"),
}

# Tuple-valued keys: the type of their items (an empty default says none).
TUPLE_ITEM_TYPES = {
    "data.locales": str, "data.formats": str, "eval.arima_order": int,
    "eval.arima_seasonal_order": int, "model.hidden_sizes": int,
    "optim.sparse_params": str, "optim.freeze": str, "imports": str,
}


def _get(config, dotted: str):
  node = config
  for part in dotted.split("."):
    try:
      node = node[part]
    except (KeyError, TypeError, AttributeError):
      raise UserError(f"The config has no key config.{dotted} (start from "
                      "rnnlab.base_config.get_config()).") from None
  return node


def _leaves(node, prefix: str = ""):
  for key, value in node.items():
    if isinstance(value, ml_collections.ConfigDict):
      yield from _leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def _type_ok(value, default) -> bool:
  """Whether `value` has the type of the default (bools are not numbers)."""
  if isinstance(default, bool):
    return isinstance(value, bool)
  if isinstance(default, int):
    return isinstance(value, int) and not isinstance(value, bool)
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


def check_types(config: ml_collections.ConfigDict):
  """Raises UserError naming the first key whose value has the wrong type
  (ml_collections lets None, and True for an int, through)."""
  for key, default in _leaves(get_config()):
    value = _get(config, key)
    if not _type_ok(value, default):
      raise UserError(f"config.{key}={value!r} must be {_type_name(default)} "
                      f"(default {default!r}).")
    item_type = TUPLE_ITEM_TYPES.get(key)
    if item_type is not None:
      for item in value:
        if not (isinstance(item, item_type) and not isinstance(item, bool)):
          raise UserError(f"config.{key}={tuple(value)!r}: every item must be "
                          f"{_type_name(item_type())}; got {item!r}.")


def validate(config: ml_collections.ConfigDict):
  """Raises UserError naming the first key of the wrong type, an
  out-of-range size or rate, or a value outside CHOICE_KEYS. Registered
  names (task, model, cell, optimizer, schedule) are checked above the
  registries, by `rnnlab.config_check.validate`."""
  check_types(config)
  registry.import_modules(config.imports)  # before a registry is read
  for key in POSITIVE_KEYS:
    if not _get(config, key) > 0:
      raise UserError(f"config.{key}={_get(config, key)!r} must be > 0.")
  for key in NON_NEGATIVE_KEYS:
    if not _get(config, key) >= 0:
      raise UserError(f"config.{key}={_get(config, key)!r} must be >= 0.")
  for key in FRACTION_KEYS:
    if not 0 <= _get(config, key) <= 1:
      raise UserError(f"config.{key}={_get(config, key)!r} must be in "
                       "[0, 1].")
  if not config.data.val_fraction + config.data.test_fraction < 1:
    raise UserError(f"config.data.val_fraction={config.data.val_fraction!r} "
                    f"plus config.data.test_fraction="
                    f"{config.data.test_fraction!r} must be below 1 (the "
                    "rest is the training split).")
  for size in config.model.hidden_sizes:
    if size < 1:
      raise UserError(f"config.model.hidden_sizes="
                      f"{tuple(config.model.hidden_sizes)!r}: every size must "
                      "be > 0.")
  for key, choices in CHOICE_KEYS.items():
    if _get(config, key) not in choices:
      raise UserError(f"Unknown config.{key}={_get(config, key)!r}. Valid "
                      f"choices: {', '.join(map(repr, choices))}.")


def load_file(spec: str) -> ml_collections.ConfigDict:
  """The config of "path.py[:arg]", as --config=path.py:arg gives it."""
  path, _, arg = spec.partition(":")
  file = pathlib.Path(path)
  if not file.is_file():
    raise UserError(f"Config file {path!r} not found. Configs are Python "
                    "files with get_config(arg), e.g. configs/gru_shakespeare.py.")
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
    "train.progress_bar", "train.profile_steps", "eval.attention_plots",
    "model.implementation", "model.layer_schedule",
    "model.hoist_input_projection", "model.unroll", "init_from",
    "sample.prime", "sample.length", "sample.temperature", "sample.top_k")


def _as_json(value):
  return json.loads(json.dumps(value))  # tuples and lists compare equal


def resume_conflicts(saved: dict, config: ml_collections.ConfigDict
                     ) -> list[str]:
  """"key: saved -> new" for each key outside RESUMABLE_KEYS in which
  `config` differs from a run's saved config.json (`saved`)."""
  old = dict(_leaves(from_saved(saved)))
  return [f"{key}: {old[key]!r} -> {value!r}"
          for key, value in _leaves(config)
          if key in old and key not in RESUMABLE_KEYS and
          _as_json(old[key]) != _as_json(value)]


def from_saved(saved: dict) -> ml_collections.ConfigDict:
  """A run's config.json on top of today's defaults.

  Keys added to rnnlab after the run was made take their defaults, so older
  runs stay loadable; keys rnnlab no longer has are dropped.
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

  merge(config, saved, "")
  registry.import_modules(config.imports)  # a saved run names its cells
  return config
