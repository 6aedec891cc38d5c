"""The config's sections: every key has a rule next to its default, no key
means two things, old names fail with the new one, and runs written with
the old flat data.* keys still evaluate, sample, predict and resume."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from rnnlab import base_config
from rnnlab import config_check
from rnnlab import sampling
from rnnlab import sweep
from rnnlab import tasks
from rnnlab import train
from rnnlab.errors import UserError
from rnnlab.tasks import forecast
from tests.helpers import ROOT

SAVED = ROOT / "tests" / "data" / "saved_configs"
SECTIONS = ("text", "classify", "forecast", "seq2seq", "synthetic")


def _leaves():
  return dict(base_config.leaves(base_config.get_config()))


def test_every_key_has_a_rule_or_is_a_listed_free_form_string():
  leaves = _leaves()
  assert set(base_config.RULES) == set(leaves)
  unruled = {k for k, rule in base_config.RULES.items() if rule is None}
  assert unruled == set(base_config.UNCHECKED), (
      "a key without a rule must be listed, with why, in UNCHECKED")
  for key in base_config.UNCHECKED:
    assert isinstance(leaves[key], str), f"{key} is not a free-form string"


def test_defaults_pass_their_rules_and_every_table_exists():
  c = base_config.get_config()
  for key, rule in base_config.RULES.items():
    if rule is not None and rule.table:
      assert rule.table in config_check.TABLES, key
  base_config.validate(c)
  config_check.validate(c)


@pytest.mark.parametrize("key,value,message", [
    ("forecast.window", 0, r"config.forecast.window=0 must be > 0\."),
    ("model.zoneout", 1.0, r"config.model.zoneout=1.0 must be in \[0, 1\)"),
    ("model.dropout_rate", 1.0, r"dropout_rate=1.0 must be in \[0, 1\)"),
    ("classify.val_fraction", 1.0, r"config.classify.val_fraction=1.0 must "
     r"be in \[0, 1\)"),
    ("seq2seq.formats", ("short",), r"config.seq2seq.formats=\('short',\) "
     "must be a tuple of date formats"),
    ("optim.freeze", ("[",), r"config.optim.freeze=\('\[',\) must be a tuple "
     "of regular expressions"),
    ("forecast.series", "tides", r"Unknown series 'tides' \(config.forecast."
     r"series\)\. Valid choices: 'co2', 'csv', 'msft', 'sine', "
     r"'sunspots'\."),
    ("classify.source", "file", r"Unknown classification source 'file'"),
    ("model.attention_score", "none", r"Unknown attention score 'none'"),
    ("seed", -1, r"config.seed=-1 must be >= 0"),
])
def test_rules_name_the_key_and_what_is_valid(key, value, message):
  c = base_config.get_config()
  section, _, leaf = key.rpartition(".")
  (c[section] if section else c)[leaf] = value
  with pytest.raises(UserError, match=message):
    config_check.validate(c)


def test_each_task_owns_a_section_and_checks_it_before_reading_data():
  c = base_config.get_config()
  for section in SECTIONS:
    assert section in c
  # Relations between a task's keys: refused by its hook, before any data
  # (the corpus path does not exist).
  c.text.path = "/nonexistent/corpus.txt"
  c.text.val_fraction, c.text.test_fraction = 0.6, 0.5
  with pytest.raises(UserError, match=r"config.text.val_fraction=0.6 plus "
                     r"config.text.test_fraction=0.5 must be below 1"):
    config_check.validate(c)
  assert all(isinstance(t.models, tuple) and t.models
             for t in tasks.TASKS.values())


def test_a_config_cannot_set_a_key_that_does_not_exist():
  c = base_config.get_config()
  with pytest.raises(AttributeError):
    c.model.pooling = "mean"  # moved to classify.pooling


def test_moved_keys_point_at_keys_that_exist():
  leaves = _leaves()
  for old, new in base_config.MOVED.items():
    assert old not in leaves, f"{old} still exists"
    for target in ([new] if isinstance(new, str) else new.values()):
      assert target in leaves, f"{old} -> {target}, which does not exist"


@pytest.mark.parametrize("old,new", [
    ("data.window", r"use config.forecast.window \("),
    ("eval.beam_size", r"use config.seq2seq.beam_size \("),
    ("data.val_fraction", r"use config.text.val_fraction \(task char_lm, "
     r"word_lm\) or config.classify.val_fraction \(task classify\) or "
     r"config.forecast.val_fraction \(task forecast\)"),
    ("model.attention", r"use config.seq2seq.attention \(task seq2seq\) or "
     r"config.model.attention_score \(task char_lm, word_lm\)"),
])
def test_an_old_key_names_its_new_key(old, new):
  error = base_config.renamed_key_error(old)
  assert error is not None and "\n" not in str(error)
  with pytest.raises(UserError, match=rf"config.{old} was renamed: {new}"):
    sweep.expand({old: [1, 2]})


def test_an_old_key_on_the_command_line_is_one_line_naming_the_new_one(
    tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "rnnlab.main",
       f"--config={ROOT / 'configs/gru_forecast_sine.py'}:runlocal",
       f"--workdir={tmp_path / 'run'}", "--config.data.window=8"],
      capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 2, proc.stderr
  assert proc.stderr.strip().splitlines() == [
      "error: config.data.window was renamed: use config.forecast.window "
      "(the config moved task-specific keys into sections; "
      "docs/config.md)."]
  assert not (tmp_path / "run").exists()


# Recipe changes made after the fixtures were written: config -> {key: (the
# saved value, today's value)}. Such a key is a resume conflict, rightly.
RECIPE_CHANGES = {
    # One encoder for every seq2seq attention (docs/attention.md).
    "gru_seq2seq_addition": {"model.bidirectional_merge": ("concat", "sum")},
    "gru_seq2seq_dates": {"model.bidirectional_merge": ("concat", "sum")},
}


@pytest.mark.parametrize("path", sorted(SAVED.glob("*.json")),
                         ids=lambda p: p.stem)
def test_a_config_json_from_before_the_sections_reads_as_today(path):
  saved = json.loads(path.read_text())
  assert "data" in saved  # written by the old code
  old = base_config.from_saved(saved)
  config_check.validate(old)
  today = base_config.load_file(f"{ROOT / 'configs' / path.stem}.py:runlocal")
  expected = dict(base_config.leaves(old))
  changes = RECIPE_CHANGES.get(path.stem, {})
  for key, (before, after) in changes.items():
    assert expected[key] == before, key
    expected[key] = after
  assert expected == dict(base_config.leaves(today))
  assert base_config.resume_conflicts(saved, today) == [
      f"{key}: {before!r} -> {after!r}"
      for key, (before, after) in changes.items()]


def _as_old_run(workdir: pathlib.Path, name: str, **changes):
  """Replaces a run's config.json by the one rnnlab wrote for the same
  config before the sections (tests/data/saved_configs), with `changes`
  ({"train.steps": 10}) applied as the old code would have written them."""
  saved = json.loads((SAVED / f"{name}.json").read_text())
  for key, value in changes.items():
    section, leaf = key.split(".")
    saved[section][leaf] = value
  (workdir / "config.json").write_text(json.dumps(saved))


def _runlocal(name: str, **changes):
  c = base_config.load_file(f"{ROOT / 'configs' / name}.py:runlocal")
  c.train.progress_bar = False  # may change on resume
  for key, value in changes.items():
    section, leaf = key.split(".")
    c[section][leaf] = value
  return c


def test_an_old_char_lm_run_evaluates_samples_and_resumes(tmp_path):
  workdir = tmp_path / "run"
  train.train_and_evaluate(_runlocal("gru_shakespeare", **{
      "train.steps": 10}), workdir)
  _as_old_run(workdir, "gru_shakespeare", **{"train.steps": 10})
  results = train.evaluate_checkpoint(None, workdir)
  assert results["step"] == 10 and results["eval"]["val"]["loss"] > 0
  run = sampling.load_run_for_inference(workdir)
  assert run.config.text.corpus == "tinyshakespeare"
  [text] = sampling.sample_text(run.model, run.params, run.vocab, "ROMEO:",
                                20)
  assert len(text) == 20
  resumed = train.train_and_evaluate(_runlocal("gru_shakespeare"), workdir)
  assert resumed["step"] == 20


def test_an_old_forecast_run_predicts(tmp_path):
  workdir = tmp_path / "run"
  train.train_and_evaluate(_runlocal("gru_forecast_sine", **{
      "train.steps": 5}), workdir)
  _as_old_run(workdir, "gru_forecast_sine", **{"train.steps": 5})
  task, step, params, _ = forecast.load_for_inference(workdir)
  assert step == 5 and task.config.forecast.window == 32
  values, method = task.forecast_future(params, 3)
  assert values.shape == (3,) and method == "recursive"


def test_the_doc_lists_every_key_as_the_code_has_it():
  doc = (ROOT / "docs" / "config.md").read_text()
  assert config_check.reference_markdown() in doc, (
      "docs/config.md is stale: paste `python -m rnnlab.config_check`")
