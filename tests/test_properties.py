"""Property tests: random bytes into the data loaders and random small
configs into validation and task/model construction. The only exceptions
allowed are rnnlab's own (UserError and its subclasses); anything else is
a bug in rnnlab, not in the input.

Nothing is trained or compiled: models are initialised with jax.eval_shape.
"""
from __future__ import annotations

import json
import math
import pathlib
import tempfile

from hypothesis import event
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import pytest

from rnnlab import base_config
from rnnlab import config_check
from rnnlab import optim
from rnnlab import tasks
from rnnlab.data import series
from rnnlab.data import text
from rnnlab.errors import UserError

# Derandomized: the same examples on every run (CI), still 50-80 of each.
SETTINGS = dict(deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def _file(data: bytes, name: str) -> pathlib.Path:
  path = pathlib.Path(tempfile.mkdtemp(prefix="rnnlab_prop_")) / name
  path.write_bytes(data)
  return path


# Random bytes, and bytes that are nearly text (UTF-8 with stray bytes,
# NULs, BOMs), which reach deeper than pure noise.
_text_like = st.lists(st.one_of(
    st.text(max_size=40).map(lambda s: s.encode("utf-8")),
    st.sampled_from([b"\x00", b"\xff", b"\xef\xbb\xbf", b"\n", b"\r\n",
                     b"\xc3", b"\xed\xa0\x80"])), max_size=12).map(b"".join)
random_bytes = st.one_of(st.binary(max_size=300), _text_like)


@settings(max_examples=80, **SETTINGS)
@given(data=random_bytes, seq_len=st.integers(-1, 6))
def test_random_bytes_into_the_text_loader_and_char_lm(data, seq_len):
  path = _file(data, "input.txt")
  try:
    corpus = text.read_text(path)
  except UserError:
    return
  # A readable corpus round-trips through its vocabulary...
  vocab = text.Vocab.from_text(corpus)
  assert vocab.decode(vocab.encode(corpus)) == corpus
  # ...and the task built on it either works or says why not.
  c = _tiny(task="char_lm")
  c.text.path, c.train.seq_len = str(path), seq_len
  try:
    config_check.validate(c)
    task = tasks.create_task(c)
  except UserError:
    return
  assert len(task.vocab) == len(vocab)
  assert len(task.splits["train"]) > seq_len


_cell = st.sampled_from(["1.5", "-2", "0", "", "nan", "NaN", "inf", "abc",
                         "1e400", '"3"', '"a,b"', "\x00", "é", "2020-01-01",
                         " 7 "])
_csv_text = st.builds(
    lambda header, rows, end: (",".join(header) + "\n" + "\n".join(
        ",".join(r) for r in rows) + end).encode("utf-8"),
    st.lists(st.sampled_from(["x", "y", "", "x", "0"]), min_size=1,
             max_size=3),
    st.lists(st.lists(_cell, max_size=4), max_size=30),
    st.sampled_from(["", "\n", "\r\n"]))


@settings(max_examples=80, **SETTINGS)
@given(data=st.one_of(random_bytes, _csv_text),
       column=st.sampled_from(["x", "y", "", "0", "Unnamed: 0"]),
       missing=st.sampled_from(["error", "interpolate", "skip"]))
def test_random_bytes_into_the_csv_series_loader(data, column, missing):
  c = base_config.get_config().forecast
  c.series, c.csv, c.column, c.missing = "csv", str(_file(data, "s.csv")), \
      column, missing
  try:
    loaded = series.load(c)
  except UserError:
    return
  # Whatever loads is a finite float series, missing values handled.
  assert loaded.values.dtype.kind == "f"
  assert all(math.isfinite(v) for v in loaded.values)
  assert missing in series.MISSING_CHOICES


@settings(max_examples=60, **SETTINGS)
@given(data=st.one_of(
    random_bytes,
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(
        max_size=3), lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
            st.sampled_from(["type", "chars", "words"]), inner, max_size=3),
                 max_leaves=8).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"type": st.sampled_from(["char", "word"]),
                           "chars": st.lists(st.text(max_size=2)),
                           "words": st.lists(st.text(max_size=4))}).map(
                               lambda v: json.dumps(v).encode())))
def test_random_bytes_into_the_vocabulary_loader(data):
  try:
    vocab = text.load_vocab(_file(data, "vocab.json"))
  except UserError:
    return
  assert len(vocab) >= 1


# -- Configs. -----------------------------------------------------------------

CORPUS = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 4


@pytest.fixture(scope="module", autouse=True)
def _corpus(tmp_path_factory):
  global _CORPUS_PATH  # pylint: disable=global-statement
  _CORPUS_PATH = tmp_path_factory.mktemp("corpus") / "input.txt"
  _CORPUS_PATH.write_text(CORPUS, encoding="utf-8")


_CORPUS_PATH = None


def _tiny(task: str):
  """Small sizes everywhere, so that each example constructs in ms."""
  c = base_config.get_config()
  c.task = task
  c.text.path = str(_CORPUS_PATH)
  c.text.vocab_size = 20
  c.forecast.num_points, c.forecast.window = 200, 8
  c.synthetic.lag, c.synthetic.copy_length, c.synthetic.alphabet = 10, 3, 4
  c.seq2seq.max_digits, c.seq2seq.num_val, c.seq2seq.num_test = 2, 8, 8
  c.synthetic.num_val = c.synthetic.num_test = 8
  c.model.hidden_size, c.model.embed_dim, c.model.num_layers = 8, 4, 1
  c.model.attention_window = 4
  c.train.batch_size, c.train.seq_len, c.train.steps = 4, 8, 10
  c.eval.batch_size, c.eval.num_streams, c.eval.seq_len = 8, 2, 8
  c.optim.warmup_steps = 2
  if task in ("forecast", "synthetic"):
    c.model.name = "sequence"
  if task == "seq2seq":
    c.model.name = "seq2seq"
  return c


LEAF_KEYS = [k for k, _ in base_config.leaves(base_config.get_config())]
SIZE_KEYS = ["model.hidden_size", "model.num_layers", "model.embed_dim",
             "model.attention_window", "model.unroll", "train.batch_size",
             "train.seq_len", "train.steps", "eval.seq_len",
             "eval.num_streams", "eval.batch_size", "text.vocab_size",
             "forecast.window", "forecast.horizon", "forecast.loss_positions",
             "forecast.num_points", "synthetic.lag", "synthetic.copy_length",
             "synthetic.alphabet", "seq2seq.max_digits", "forecast.season",
             "optim.warmup_steps", "forecast.mase_lag"]
# Key -> (valid names, invalid ones).
NAME_CHOICES = {
    "model.name": (["rnn_lm", "attention_lm", "sequence", "seq2seq",
                    "classifier"], ["rnn-lm", ""]),
    "model.cell": (["rnn", "lstm", "gru"], ["gur", "LSTM"]),
    "model.embedding": (["learned", "one_hot"], ["onehot"]),
    "model.implementation": (["auto", "scan", "fused", "native", "cudnn"],
                             ["jit"]),
    "model.layer_schedule": (["wavefront", "layer_by_layer"], ["diagonal"]),
    "model.activation": (["tanh", "relu"], ["gelu"]),
    "model.dtype": (["float32", "bfloat16"], ["float8"]),
    "seq2seq.attention": (["additive", "dot", "scaled_dot", "none"],
                          ["cosine"]),
    "model.attention_score": (["additive", "dot", "scaled_dot"],
                              ["none", "cosine"]),
    "optim.name": (["adam", "adamw", "sgd", "rmsprop", "sparse_adam"],
                   ["adamm"]),
    "optim.schedule": (["constant", "warmup_cosine", "exponential",
                        "reduce_on_plateau"], ["cosine"]),
    "optim.clip": (["global_norm", "value"], ["norm"]),
    "train.order": (["random", "stateful"], ["shuffled"]),
    "synthetic.problem": (["adding", "copy_memory"], ["sorting",
                                                      "addition"]),
    "seq2seq.problem": (["addition"], ["sorting", "adding"]),
    "forecast.series": (["sine", "csv"], ["tides"]),
    "forecast.missing": (["error", "interpolate"], ["drop"]),
}
ODD_VALUES = [None, True, False, "abc", "", 1.5, -1, 0, 10**9, [1], [],
              {"a": 1}, ["a", 2], float("nan"), float("inf")]


@st.composite
def configs(draw):
  """A small config as config.json would hold it; `kind` picks what may
  be wrong, so that about a fifth are valid throughout."""
  kind = draw(st.sampled_from(["valid", "sizes", "names", "types",
                               "mixed"]))
  task = draw(st.sampled_from(["char_lm", "word_lm", "forecast",
                               "synthetic", "seq2seq"] +
                              (["language_model"] if kind != "valid" else [])))
  c = _tiny(task if task in tasks.TASKS else "char_lm")
  c.task = task
  saved = c.to_dict()  # through from_saved: how a config.json is read

  def put(key, value):
    section, _, leaf = key.rpartition(".")
    (saved[section] if section else saved)[leaf] = value

  low = -2 if kind in ("sizes", "mixed") else 1
  for key in draw(st.lists(st.sampled_from(SIZE_KEYS), max_size=4,
                           unique=True)):
    put(key, draw(st.integers(low, 9)))
  for key in draw(st.lists(st.sampled_from(sorted(NAME_CHOICES)),
                           max_size=3, unique=True)):
    valid, invalid = NAME_CHOICES[key]
    put(key, draw(st.sampled_from(
        valid + (invalid if kind in ("names", "mixed") else []))))
  if kind in ("types", "mixed"):
    for key in draw(st.lists(st.sampled_from(LEAF_KEYS), min_size=1,
                             max_size=2)):
      put(key, draw(st.sampled_from(ODD_VALUES)))
  if draw(st.booleans()):
    put("model.hidden_sizes", draw(st.lists(st.integers(low - 1, 9),
                                            max_size=3)))
  return saved


@settings(max_examples=100, **SETTINGS)
@given(saved=configs())
def test_random_small_configs_validate_and_construct(saved):
  try:
    c = base_config.from_saved(saved)
    config_check.validate(c)
    task = tasks.create_task(c)
    # Shapes only: traces the model and the optimizer, compiles nothing.
    params = jax.eval_shape(lambda k: task.model.init(k, *task.init_inputs()),
                            jax.random.key(0))["params"]
    tx = optim.create_optimizer(c.optim, c.train.steps,
                                task.steps_per_epoch())
    jax.eval_shape(tx.init, params)
  except UserError as e:
    assert str(e)  # a message, not a bare exception
    event(f"refused: {str(e)[:40]}")
    return
  event(f"built {c.task}")
  # A config that passes builds a model with parameters.
  assert jax.tree.leaves(params)
  assert all(x.dtype == jnp.dtype(c.model.param_dtype)
             for x in jax.tree.leaves(params))
