"""Text classification from any CSV of labelled text, and labelling new
text with a trained run (`python -m rnnlab.classify`)."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from rnnlab import config_check
from rnnlab import recipes
from rnnlab import train
from rnnlab.data import classification as data
from rnnlab.errors import DataError, UserError
from rnnlab.tasks import classify
from tests.helpers import ROOT

GOOD = ("a gorgeous witty film", "great fun and moving", "a sharp delight")
BAD = ("two dull hours", "a tedious mess", "flat and lifeless work")


def _write_csv(path, rows, header=("review", "verdict")):
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)
  return path


def _rows(n: int, seed: int = 0):
  """Generated reviews: "fresh" ones from GOOD's words, "rotten" from BAD's,
  with filler words shared by both."""
  rng = np.random.default_rng(seed)
  filler = ["the", "movie", "is", "this", "plot", "actors", "story"]
  rows = []
  for i in range(n):
    fresh = i % 3 != 0  # 2:1, as Rotten Tomatoes' fresh:rotten is ~1.4:1
    words = list(rng.choice(" ".join(GOOD if fresh else BAD).split(), 3))
    words += list(rng.choice(filler, 4))
    rng.shuffle(words)
    rows.append((" ".join(words), "fresh" if fresh else "rotten"))
  return rows


def _config(train_csv, **classify_keys):
  c = recipes.text_config("", "runlocal")
  c.classify.source, c.classify.train_csv = "csv", str(train_csv)
  c.classify.text_column, c.classify.label_column = "review", "verdict"
  c.classify.vocab_size, c.classify.val_fraction = 50, 0.2
  for key, value in classify_keys.items():
    c.classify[key] = value
  c.train.progress_bar = False
  return c


def test_csv_splits_are_stratified_and_the_test_split_ignores_the_seed(
    tmp_path):
  path = _write_csv(tmp_path / "reviews.csv", _rows(300))
  d = _config(path).classify
  a = data.load_dataset(d, seed=0)
  assert a.classes == ["fresh", "rotten"]  # strings, sorted
  sizes = {k: len(v) for k, v in a.splits.items()}
  assert sizes == {"train": 216, "val": 54, "test": 30}
  for split in a.splits.values():  # 2:1 in every split
    assert abs(np.mean(split.labels == 0) - 2 / 3) < 0.02
  b = data.load_dataset(d, seed=1)

  def texts(dataset, split):  # token ids differ: the vocabularies do
    s = dataset.splits[split]
    return [" ".join(dataset.vocab.tokens[i] for i in row[:n])
            for row, n in zip(s.inputs, s.lengths)]

  assert texts(a, "test") == texts(b, "test")
  assert texts(a, "val") != texts(b, "val")


def test_labels_are_strings_and_a_test_file_is_used_as_it_is(tmp_path):
  rows = [(t, "1" if l == "fresh" else "0") for t, l in _rows(60)]
  train_csv = _write_csv(tmp_path / "train.csv", rows[:40])
  test_csv = _write_csv(tmp_path / "test.csv", rows[40:])
  dataset = data.load_dataset(_config(train_csv, test_csv=str(test_csv))
                              .classify, seed=0)
  assert dataset.classes == ["0", "1"]
  assert len(dataset.splits["test"]) == 20
  assert len(dataset.splits["train"]) + len(dataset.splits["val"]) == 40


@pytest.mark.parametrize("content,keys,error,message", [
    (None, {}, DataError, r"classify.train_csv='.*missing.csv': no such "
     "file"),
    ("", {}, DataError, r"is empty \(expected a header row"),
    ("review,verdict\n", {}, DataError, "has a header but no rows"),
    ("text,label\na,b\n", {}, DataError, r"classify.text_column='review' is "
     r"not a column of .*Valid choices: 'text', 'label'\."),
    ("review,verdict\ngood,fresh\nfine,fresh\n", {}, DataError,
     r"has a single class \('fresh' in column 'verdict'\)"),
    ("review,verdict\ngood,fresh\nbad,\nok,rotten\n", {}, DataError,
     r"1 row\(s\) without a label in column 'verdict' \(rows 3;"),
])
def test_csv_errors_name_the_problem(tmp_path, content, keys, error,
                                     message):
  path = tmp_path / "missing.csv"
  if content is not None:
    path.write_text(content)
  with pytest.raises(error, match=message):
    data.load_dataset(_config(path, **keys).classify, seed=0)


def test_a_test_label_never_seen_in_training_is_refused(tmp_path):
  train_csv = _write_csv(tmp_path / "train.csv", _rows(30))
  test_csv = _write_csv(tmp_path / "test.csv",
                        _rows(5) + [("so so", "meh")])
  with pytest.raises(DataError, match=r"test_csv=.* has label\(s\) 'meh' "
                     r"that classify.train_csv never has \(its classes: "
                     r"'fresh', 'rotten'\)"):
    data.load_dataset(_config(train_csv, test_csv=str(test_csv)).classify,
                      seed=0)


def test_the_csv_source_is_checked_before_any_file_is_read():
  c = _config("")
  with pytest.raises(UserError, match="classify.source='csv' needs "
                     "config.classify.train_csv"):
    config_check.validate(c)


def test_a_csv_run_trains_and_labels_new_text(tmp_path):
  path = _write_csv(tmp_path / "reviews.csv", _rows(400))
  c = _config(path)
  c.train.steps, c.train.eval_every = 60, 30
  c.train.checkpoint_every, c.optim.learning_rate = 30, 1e-2
  c.optim.schedule = "constant"
  c.classify.word_dropout = 0.1
  workdir = tmp_path / "run"
  results = train.train_and_evaluate(c, workdir)
  assert results["eval"]["test"]["accuracy"] > 0.9
  run = classify.load_text_classifier(workdir)
  assert run.model.word_dropout == 0.1  # the trained model, as configured
  assert run.checkpoint == "best" and run.classes == ["fresh", "rotten"]
  labels = run.label(["a gorgeous witty delight", "a dull tedious mess", ""])
  assert [label for label, _ in labels[:2]] == ["fresh", "rotten"]
  assert all(0.5 <= p <= 1 for _, p in labels)
  np.testing.assert_allclose(run.probabilities(["great fun"]).sum(), 1.0,
                             rtol=1e-5)
  # The command: one tab-separated line per text, or JSON.
  lines = tmp_path / "new.txt"
  lines.write_text("great fun and moving\n\ntwo dull hours\n")
  proc = subprocess.run(
      [sys.executable, "-m", "rnnlab.classify", f"--workdir={workdir}",
       f"--file={lines}", "--text=a sharp delight", "--json"],
      capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 0, proc.stderr
  out = [json.loads(line) for line in proc.stdout.splitlines()]
  assert [o["text"] for o in out] == ["a sharp delight",
                                      "great fun and moving",
                                      "two dull hours"]
  assert [o["label"] for o in out] == ["fresh", "fresh", "rotten"]
  assert all(set(o["probabilities"]) == {"fresh", "rotten"} for o in out)


def test_labelling_refuses_a_run_of_another_task(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text(json.dumps({"task": "char_lm"}))
  with pytest.raises(UserError, match="task='char_lm' run; labelling text "
                     "needs task='classify'"):
    classify.load_text_classifier(workdir)
  with pytest.raises(UserError, match="Unknown checkpoint 'first'"):
    classify.load_text_classifier(workdir, "first")
