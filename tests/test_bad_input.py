"""Bad inputs give one clear rnnlab error naming the bad value and the
valid choices: configs, data files, and sampling from a workdir."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from rnnlab import base_config
from rnnlab import checkpoint
from rnnlab import config_check
from rnnlab import models
from rnnlab import rundir
from rnnlab import sample
from rnnlab import sampling
from rnnlab import tasks
from rnnlab import train
from rnnlab.data import series
from rnnlab.data import text
from rnnlab.errors import CheckpointError, DataError, UserError
from tests.helpers import ROOT, tiny_config, tiny_lm_config

# -- Config. ------------------------------------------------------------------


@pytest.mark.parametrize("key,value,message", [
    ("model.cell", "gur", r"Unknown cell 'gur' \(config.model.cell\). Valid "
     r"choices: 'gru', 'lstm', 'rnn'\."),
    ("model.name", "rnn_lmm", r"Unknown model 'rnn_lmm' \(config.model.name\). "
     r"Valid choices: .*'rnn_lm'"),
    ("task", "charlm", r"Unknown task 'charlm' \(config.task\). Valid choices: "
     r"'char_lm', 'classify'"),
    ("optim.name", "adamm", r"Unknown optimizer 'adamm' \(config.optim.name\). "
     r"Valid choices: .*'adam', 'adamw'"),
    ("optim.schedule", "cosine", r"Unknown schedule 'cosine' "
     r"\(config.optim.schedule\). Valid choices: 'constant', 'exponential'"),
    ("train.order", "stateless", r"Unknown config.train.order='stateless'. "
     r"Valid choices: 'random', 'stateful'\."),
])
def test_unknown_names_list_the_valid_choices(key, value, message):
  c = base_config.get_config()
  section, _, leaf = key.rpartition(".")
  (c[section] if section else c)[leaf] = value
  with pytest.raises(UserError, match=message):
    config_check.validate(c)


@pytest.mark.parametrize("key,value", [
    ("model.hidden_size", 0), ("model.hidden_size", -3),
    ("model.num_layers", 0), ("model.embed_dim", -1),
    ("train.batch_size", 0), ("train.seq_len", -128), ("train.steps", 0),
    ("eval.seq_len", 0), ("forecast.window", 0), ("optim.learning_rate", -1e-3),
])
def test_zero_or_negative_sizes_name_the_key(key, value):
  c = base_config.get_config()
  section, leaf = key.split(".")
  c[section][leaf] = value
  with pytest.raises(UserError, match=rf"config\.{key}={value!r} must be "
                     r"> 0\."):
    base_config.validate(c)


def test_zero_in_per_layer_sizes():
  c = base_config.get_config()
  c.model.hidden_sizes = (64, 0)
  with pytest.raises(UserError, match=r"hidden_sizes=\(64, 0\) must be a "
                     "tuple of integers > 0"):
    base_config.validate(c)


@pytest.mark.parametrize("key,value,message", [
    # ml_collections lets None and True through its own type check.
    ("model.hidden_size", None, r"config.model.hidden_size=None must be an "
     r"integer \(default 256\)"),
    ("train.batch_size", True, r"config.train.batch_size=True must be an "
     "integer"),
    ("model.hidden_sizes", ("64",), r"hidden_sizes=\('64',\) must be a "
     "tuple of integers > 0"),
])
def test_wrong_types_in_a_config(key, value, message):
  c = base_config.get_config()
  section, leaf = key.split(".")
  c[section][leaf] = value
  with pytest.raises(UserError, match=message):
    base_config.validate(c)


def test_wrong_type_in_a_saved_config_json():
  with pytest.raises(CheckpointError, match=r"Saved config: config.train."
                     r"steps='abc' must be an integer \(default 2000\)"):
    base_config.from_saved({"train": {"steps": "abc"}})
  with pytest.raises(CheckpointError, match="model must be a JSON object"):
    base_config.from_saved({"model": 3})


@pytest.mark.parametrize("task,model,message", [
    ("char_lm", "sequence", r"task='char_lm' needs model.name='rnn_lm' or "
     r"'attention_lm', got 'sequence'\."),
    ("char_lm", "seq2seq", r"task='char_lm' needs model.name='rnn_lm' or "
     r"'attention_lm', got 'seq2seq'\."),
    ("forecast", "rnn_lm", r"task='forecast' needs model.name='sequence', "
     r"got 'rnn_lm'\."),
])
def test_a_model_that_does_not_fit_the_task(task, model, message):
  c = base_config.get_config()
  c.task, c.model.name = task, model
  with pytest.raises(UserError, match=message):
    config_check.validate(c)
  with pytest.raises(UserError, match=message):  # before any data is read
    tasks.create_task(c)


def test_a_model_that_does_not_fit_the_task_is_refused():
  # Task.models is the one pairing: checked before any data is read, and
  # again when a task builds its model.
  c = tiny_config("gru_forecast_sine", model__name="rnn_lm")
  message = (r"task='forecast' needs model.name='sequence', got 'rnn_lm'\.")
  with pytest.raises(UserError, match=message):
    config_check.validate(c)
  with pytest.raises(UserError, match=message):
    tasks.create_task(c)


def _cli(*args, cwd):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run(
      [sys.executable, "-m", "rnnlab.main",
       f"--config={ROOT / 'configs/rnn_shakespeare.py'}:runlocal", *args],
      capture_output=True, text=True, env=env, cwd=cwd, timeout=120,
      check=False)


def test_cli_override_of_the_wrong_type(tmp_path):
  # config_flags rejects it while parsing flags: before any import of data.
  proc = _cli(f"--workdir={tmp_path / 'run'}", "--config.train.steps=abc",
              cwd=ROOT)
  assert proc.returncode == 2
  assert proc.stderr.splitlines() == [
      "error: flag --config.train.steps=abc: invalid literal for int() with "
      "base 10: 'abc'"]
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("config,message", [
    ("configs/no_such.py:runlocal", "error: --config=configs/no_such.py: no "
     "such config file"),
    ("configs/rnn_shakespeare.py:runlokal", "error: Unknown config arg "
     "['runlokal']. Valid choices: runlocal."),
])
def test_cli_config_that_cannot_load_is_one_line(tmp_path, config, message):
  # config_flags would wrap these in a traceback (or raise on first use).
  proc = subprocess.run(
      [sys.executable, "-m", "rnnlab.main", f"--config={config}",
       f"--workdir={tmp_path / 'run'}"], capture_output=True, text=True,
      cwd=ROOT, timeout=120, check=False)
  assert proc.returncode == 2
  assert len(proc.stderr.splitlines()) == 1, proc.stderr
  assert proc.stderr.startswith(message)
  assert not (tmp_path / "run").exists()


def test_cli_unknown_cell_is_one_line_before_the_workdir(tmp_path):
  proc = _cli(f"--workdir={tmp_path / 'run'}", "--config.model.cell=gur",
              cwd=ROOT)
  assert proc.returncode == 2
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert errors == ["error: Unknown cell 'gur' (config.model.cell). Valid "
                    "choices: 'gru', 'lstm', 'rnn'."]
  assert "Traceback" not in proc.stderr
  assert not (tmp_path / "run").exists()  # validated before anything ran


def _small_corpus(tmp_path, content="hello world, hello rnn.\n" * 5):
  path = tmp_path / "input.txt"
  path.write_text(content, encoding="utf-8")
  return path


def test_sequence_longer_than_the_text(tmp_path):
  c = tiny_lm_config(text__path=str(_small_corpus(tmp_path)),
                     train__seq_len=200)
  with pytest.raises(UserError, match=r"train.seq_len=200 is longer than the "
                     r"training split \(108 characters\)"):
    tasks.create_task(c)


def test_window_longer_than_the_series():
  c = base_config.get_config()
  c.task, c.model.name, c.forecast.series = "forecast", "sequence", "sine"
  c.forecast.num_points, c.forecast.window = 50, 64
  c.forecast.val_fraction = c.forecast.test_fraction = 0.15
  with pytest.raises(UserError, match=r"train split of 'sine' has 34 points; "
                     r"forecast.window=64 plus forecast.horizon=1 need at least 66"):
    tasks.create_task(c)


# -- Data. --------------------------------------------------------------------


@pytest.mark.parametrize("content,error,message", [
    (b"", DataError, r"input.txt is empty\."),
    (b"abc\xff\xfedef", DataError, r"input.txt is not valid UTF-8 text "
     r"\('utf-8' codec can't decode byte 0xff in position 3"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", DataError,
     r"input.txt looks binary \(it holds NUL bytes\); expected UTF-8 text"),
])
def test_unreadable_text_files_through_the_task(tmp_path, content, error,
                                               message):
  path = tmp_path / "input.txt"
  path.write_bytes(content)
  with pytest.raises(error, match=message):
    tasks.create_task(tiny_lm_config(text__path=str(path)))


def _csv_config(path, column):
  c = base_config.get_config().forecast
  c.series, c.csv, c.column = "csv", str(path), column
  return c


def test_csv_without_the_column_names_the_columns(tmp_path):
  path = tmp_path / "s.csv"
  path.write_text("date,price,volume\n2020,1.5,3\n2021,1.7,4\n")
  with pytest.raises(DataError, match=r"forecast.column='close' is not a column "
                     r"of .*s.csv. Valid choices: 'date', 'price', "
                     r"'volume'\."):
    series.load(_csv_config(path, "close"))


def test_nans_in_a_series_say_where(tmp_path):
  path = tmp_path / "s.csv"
  path.write_text("x\n1.0\n2.0\nnan\n4.0\n\n6.0\n")  # the blank line: skipped
  with pytest.raises(DataError, match=r"has 1 missing value\(s\) of 5, e.g. "
                     r"at index 2 \(time 2\)\. Set forecast.missing to one of "
                     r"'error', 'interpolate'"):
    series.load(_csv_config(path, "x"))
  path.write_text("x,y\n1.0,1\n,2\n3.0,3\n")
  with pytest.raises(DataError, match=r"1 missing value\(s\) of 3, e.g. at "
                     r"index 1"):
    series.load(_csv_config(path, "x"))


def test_bad_vocabulary_files(tmp_path):
  path = tmp_path / "vocab.json"
  path.write_bytes(b"\xff\xfe{}")
  with pytest.raises(UserError, match=r"is not a vocabulary JSON file \(not "
                     r"UTF-8 text\)"):
    text.load_vocab(path)
  path.write_text('{"type": ["char"]}')
  with pytest.raises(UserError, match=r"unknown vocabulary type \['char'\]"):
    text.load_vocab(path)
  path.write_text('{"type": "char", "chars": ["a", 3]}')
  with pytest.raises(UserError, match=r"chars must be non-empty strings; got "
                     r"\[3\]"):
    text.load_vocab(path)


# -- Sampling. ----------------------------------------------------------------


def test_prime_with_characters_outside_the_vocabulary():
  vocab = text.Vocab.from_text("abc \n")
  # The prime is checked before the model runs: no model needed.
  with pytest.raises(UserError, match=r"Characters not in the vocabulary: "
                     r"\['Z', 'é'\]\. The vocabulary has 5 characters: "
                     r"'\\n abc'"):
    sampling.sample_text(None, None, vocab, "abZé", 10)


@pytest.mark.parametrize("kwargs,message", [
    (dict(length=0), "length=0 must be >= 1"),
    (dict(length=-5), "length=-5 must be >= 1"),
    (dict(batch_size=0), "batch_size=0 must be >= 1"),
    (dict(temperature=float("nan")), "temperature=nan must be >= 0"),
])
def test_bad_sampling_sizes(kwargs, message):
  vocab = text.Vocab.from_text("abc")
  kwargs = {"length": 10, **kwargs}
  with pytest.raises(UserError, match=message):
    sampling.sample_text(None, None, vocab, "ab", **kwargs)


def test_workdir_without_a_run_or_checkpoint(tmp_path):
  with pytest.raises(CheckpointError, match=r"No config.json in .*: not an "
                     r"rnnlab run directory \(train there first\)"):
    sampling.load_run_for_inference(tmp_path)
  (tmp_path / "config.json").write_text(
      json.dumps(base_config.get_config().to_dict()))
  text.Vocab.from_text("abc").save(tmp_path / "vocab.json")
  with pytest.raises(CheckpointError, match=r"No checkpoint in .* \(expected "
                     r".*checkpoints\)"):
    sampling.load_run_for_inference(tmp_path)


def test_vocabulary_that_does_not_match_the_checkpoint(tmp_path):
  c = base_config.get_config()
  c.model.hidden_size, c.model.embed_dim, c.model.num_layers = 8, 4, 1
  trained_vocab = text.Vocab.from_text("abcdef\n")  # 7 characters
  model = models.create_model(c.model, vocab_size=len(trained_vocab))
  params = model.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))
  (tmp_path / "config.json").write_text(json.dumps(c.to_dict()))
  ckpt = checkpoint.Checkpointer(tmp_path / "checkpoints")
  ckpt.save(3, params["params"], {"count": jnp.zeros(())}, {})
  ckpt.close()
  trained_vocab.save(tmp_path / "vocab.json")
  assert sampling.load_run_for_inference(tmp_path).step == 3  # the matching vocabulary loads
  text.Vocab.from_text("abcdefgh\n").save(tmp_path / "vocab.json")
  with pytest.raises(CheckpointError, match=r"vocab.json holds 9 tokens, but "
                     r"the checkpoint at step 3 was trained on a vocabulary "
                     r"of 7 \(its readout has 7 rows\)"):
    sampling.load_run_for_inference(tmp_path)


# -- No pickle. ---------------------------------------------------------------

PICKLERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib",
            "shelve"}


def _pickle_uses(source: str, name: str) -> list[str]:
  """Imports of a pickler, np.load without allow_pickle=False, pandas'
  pickle readers: each runs code from the file it reads."""
  found = []
  for node in ast.walk(ast.parse(source)):
    names = []
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      names = [node.module or ""]
    if any(n.split(".")[0] in PICKLERS for n in names):
      found.append(f"{name}:{node.lineno} imports {names}")
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        and node.func.attr == "load" and
        getattr(node.func.value, "id", "") in ("np", "numpy")):
      kw = {k.arg: k.value for k in node.keywords}
      if not (isinstance(kw.get("allow_pickle"), ast.Constant) and
              kw["allow_pickle"].value is False):
        found.append(f"{name}:{node.lineno} np.load without "
                     "allow_pickle=False")
    if isinstance(node, ast.Attribute) and node.attr == "read_pickle":
      found.append(f"{name}:{node.lineno} read_pickle")
  return found


def test_no_module_in_rnnlab_uses_pickle():
  """Checkpoints, vocabularies and configs are read as JSON and Orbax
  arrays only."""
  files = sorted((ROOT / "rnnlab").rglob("*.py"))
  assert len(files) > 20
  found = [use for path in files
           for use in _pickle_uses(path.read_text(encoding="utf-8"),
                                   str(path.relative_to(ROOT)))]
  assert not found, found


@pytest.mark.parametrize("source,refused", [
    ("import pickle", True), ("import os, _pickle as p", True),
    ("from cloudpickle import loads", True), ("import joblib.numpy_pickle",
                                              True),
    ("np.load(f)", True), ("numpy.load(f, allow_pickle=True)", True),
    ("np.load(f, allow_pickle=False)", False), ("pd.read_pickle(f)", True),
    ("import json; json.load(f)", False),
])
def test_the_pickle_check_refuses_each_form(source, refused):
  assert bool(_pickle_uses(source, "x.py")) == refused


@pytest.mark.parametrize("overrides,message", [
    (dict(sample__top_k=1000), r"config\.sample\.top_k=1000 must be in "
     r"\[0, 65\]"),
    (dict(sample__prime="ROMEO€"), r"config\.sample\.prime='ROMEO€': "
     r"Characters not in the vocabulary: \['€'\]"),
    (dict(sample__length=0), r"config\.sample\.length=0 must be >= 1"),
])
def test_sampling_options_are_checked_before_training(tmp_path, corpus_path,
                                                      overrides, message):
  """Not at the first periodic sample, possibly an hour into the run."""
  del corpus_path
  config = tiny_lm_config(train__sample_every=10, **overrides)
  with pytest.raises(UserError, match=message):
    tasks.create_task(config)
  config.train.sample_every = 0  # no samples: the options are not used
  tasks.create_task(config)


def test_word_prime_without_tokens_is_an_error():
  vocab = text.WordVocab.from_text("to be or not to be\n", 10)
  with pytest.raises(UserError, match=r"prime='   ' holds no token of the "
                     "WordVocab"):
    sampling.sample_text(None, None, vocab, "   ", 10)


def test_corrupt_config_json_is_one_line_and_exit_2(tmp_path):
  (tmp_path / "config.json").write_text('{"model": {"cell": "gr')
  proc = subprocess.run(
      [sys.executable, "-m", "rnnlab.main", "--mode=eval",
       f"--workdir={tmp_path}"], capture_output=True, text=True, cwd=ROOT,
      timeout=120, check=False)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  assert f"{tmp_path / 'config.json'} is not readable JSON" in proc.stderr
  (tmp_path / "config.json").write_text("[1, 2]")
  with pytest.raises(CheckpointError, match="must hold a JSON object"):
    rundir.load_config(tmp_path)


def test_eval_mode_validates_the_saved_config(tmp_path):
  saved = base_config.get_config().to_dict()
  saved["model"]["hidden_size"] = -4
  (tmp_path / "config.json").write_text(json.dumps(saved))
  with pytest.raises(UserError, match=r"config\.model\.hidden_size=-4 must "
                     "be > 0"):
    train.evaluate_checkpoint(None, tmp_path)


def test_sample_command_caps_length_and_batch_size(tmp_path):
  def sample_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "rnnlab.sample", f"--workdir={tmp_path}",
         *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
  proc = sample_cli(f"--length={sample.MAX_LENGTH + 1}")
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert (f"--length={sample.MAX_LENGTH + 1} is above the limit of "
          f"{sample.MAX_LENGTH} (--max_length") in proc.stderr
  proc = sample_cli("--batch_size=100000")
  assert "--max_batch_size" in proc.stderr and proc.returncode == 2
  # The flag raises the cap: the run directory is what fails next.
  proc = sample_cli(f"--length={sample.MAX_LENGTH + 1}",
                    f"--max_length={sample.MAX_LENGTH + 1}")
  assert proc.returncode == 2 and "No config.json" in proc.stderr
