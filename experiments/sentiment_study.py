"""The sentiment study of docs/classification.md: GRU vs LSTM vs Elman,
bidirectional vs one direction, last-state vs mean pooling, 3 seeds each,
on the Rotten Tomatoes snippets, beside a bag-of-words baseline and the
majority class on the same splits.

  python -m experiments.sentiment_study --root=runs/sentiment \
      --doc=docs/classification.md
  python -m experiments.sentiment_study --root=/tmp/sentiment --seeds=0 \
      --cells=gru --doc=/tmp/sentiment/report.md -- --config.train.steps=20

Every trial is `configs/gru_rotten_tomatoes.py` with the cell, the
direction and the pooling overridden, run through rnnlab.sweep (done trials
are skipped, so a rerun resumes); its test accuracy is that of its best
checkpoint, chosen on validation loss (<workdir>/best_eval.json). The
baseline: tf-idf of word unigrams and bigrams with logistic regression
(scikit-learn), its inverse regularisation C chosen on the validation
split. A --doc that already holds the study's markers gets the part
between them replaced; another file is written whole.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import pathlib
import platform
import statistics
import sys
from typing import Any

import numpy as np

from rnnlab import sweep
from rnnlab.data import rotten_tomatoes as rt

CONFIG = "configs/gru_rotten_tomatoes.py"
CELLS = ("gru", "lstm", "rnn")
BEGIN, END = "<!-- sentiment-study:begin -->", "<!-- sentiment-study:end -->"
BOW_C = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
RECIPE_BEFORE_REGULARISERS = ("--config.classify.word_dropout=0.0",
                              "--config.optim.ema_decay=0.0",
                              "--config.classify.ensemble_size=1")


def trials(cells, seeds) -> list[dict[str, Any]]:
  return [{"model.cell": c, "model.bidirectional": b,
           "classify.pooling": p, "seed": s}
          for c in cells for b in (True, False) for p in ("last", "mean")
          for s in seeds]


def bag_of_words(splits: dict[str, list[dict[str, str]]]
                 ) -> dict[str, Any]:
  """tf-idf (1-2 grams, sublinear tf) + logistic regression; C picked on
  validation accuracy. Returns the pick, its accuracies and every C's."""
  from sklearn import feature_extraction  # pylint: disable=g-import-not-at-top
  from sklearn import linear_model  # pylint: disable=g-import-not-at-top
  texts = {k: [r["text"] for r in v] for k, v in splits.items()}
  labels = {k: np.array([rt.CLASSES.index(r["category"]) for r in v])
            for k, v in splits.items()}
  vectorizer = feature_extraction.text.TfidfVectorizer(ngram_range=(1, 2),
                                                       sublinear_tf=True)
  x = {"train": vectorizer.fit_transform(texts["train"])}
  x.update({k: vectorizer.transform(texts[k]) for k in ("validation",
                                                         "test")})
  scores = {}
  for c in BOW_C:
    model = linear_model.LogisticRegression(C=c, max_iter=2000)
    model.fit(x["train"], labels["train"])
    scores[c] = {k: float(model.score(x[k], labels[k]))
                 for k in ("validation", "test")}
  best = max(BOW_C, key=lambda c: (scores[c]["validation"], -c))
  return {"C": best, **scores[best], "features": x["train"].shape[1],
          "all": {str(c): s for c, s in scores.items()}}


def majority(splits) -> dict[str, Any]:
  """The class most frequent in training, and its share of test."""
  train = [r["category"] for r in splits["train"]]
  label = max(rt.CLASSES, key=train.count)
  test = [r["category"] for r in splits["test"]]
  return {"label": label, "test": test.count(label) / len(test)}


def _best_eval(workdir: pathlib.Path) -> dict[str, Any] | None:
  path = workdir / "best_eval.json"
  return json.loads(path.read_text()) if path.exists() else None


def mean_std(values, scale: float = 100.0, digits: int = 1) -> str:
  """"mean ± sample std" of the finite values times `scale` (100: a
  fraction as a percentage), "n/a" if there are none; the studies'
  reports share it."""
  values = [v for v in values if v is not None and math.isfinite(v)]
  if not values:
    return "n/a"
  std = statistics.stdev(values) if len(values) > 1 else 0.0
  return (f"{scale * statistics.mean(values):.{digits}f} ± "
          f"{scale * std:.{digits}f}")


def cores_note(cpus) -> str:
  """" (1 core)", " (2 cores)", " (1 / 2 cores)" from the CPU counts runs
  recorded, "" if none did: wall clocks compare only at the same count."""
  cpus = sorted(set(cpus) - {None})
  if not cpus:
    return ""
  return f" ({' / '.join(map(str, cpus))} core{'s' if cpus != [1] else ''})"


def summarise(root: pathlib.Path, cells, seeds) -> list[dict[str, Any]]:
  """One row per (cell, direction, pooling): accuracies over seeds."""
  rows = []
  for cell in cells:
    for bidirectional in (True, False):
      for pooling in ("last", "mean"):
        group = [t for t in trials([cell], seeds)
                 if t["model.bidirectional"] == bidirectional and
                 t["classify.pooling"] == pooling]
        runs = [sweep.read_trial(root / sweep.trial_name(t)) for t in group]
        best = [_best_eval(run["workdir"]) for run in runs]
        model_file = runs[0]["workdir"] / "model.json"
        params = (json.loads(model_file.read_text())["parameters"]
                  if model_file.exists() else None)
        rows.append({
            "cell": cell, "bidirectional": bidirectional,
            "pooling": pooling, "runs": runs, "parameters": params,
            "test": [b["eval"]["test"]["accuracy"] if b else math.nan
                     for b in best],
            "val": [b["eval"]["val"]["accuracy"] if b else math.nan
                    for b in best],
            "best_step": [b["step"] if b else None for b in best],
            "wall": [r["seconds"] for r in runs if r["seconds"]],
            "status": sorted({r["status"] for r in runs})})
  return rows


def plot(rows, path: pathlib.Path) -> pathlib.Path:
  """Validation accuracy against step, mean over seeds: one panel per
  cell, one line per direction and pooling."""
  cells = sorted({r["cell"] for r in rows}, key=CELLS.index)
  fig, axes = sweep.figure(len(cells), (5 * len(cells), 3.6))
  for ax, cell in zip(axes, cells):
    groups = {f"{'bi' if r['bidirectional'] else 'uni'}, {r['pooling']}":
              r["runs"] for r in rows if r["cell"] == cell}
    sweep.draw_curves(ax, groups, "val/accuracy")
    ax.set_title(cell.upper())
    ax.set_xlabel("step")
    ax.set_ylabel("validation accuracy")
  return sweep.save_figure(fig, path)


def cpu_model() -> str:
  """The CPU's model name (/proc/cpuinfo), else the machine type."""
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.machine()


def markdown(rows, bow, major, sizes, seeds, command: str,
             png: str) -> str:
  lines = [
      BEGIN, "",
      f"Generated {datetime.date.today()} on {cpu_model()} "
      f"({os.cpu_count()} CPU cores) by", "", f"    {command}", "",
      f"Splits (by movie, rnnlab/data/rotten_tomatoes.py): train "
      f"{sizes['train']:,}, validation {sizes['validation']:,}, test "
      f"{sizes['test']:,} snippets. Test accuracy of the checkpoint chosen "
      f"on validation loss, mean ± std over seeds "
      f"{', '.join(map(str, seeds))}; wall is one whole command.", "",
      "| model | direction | pooling | parameters | val accuracy (%) | "
      "test accuracy (%) | wall per run | status |",
      "|---|---|---|---|---|---|---|---|"]
  for r in sorted(rows, key=lambda r: -statistics.mean(
      [v for v in r["val"] if math.isfinite(v)] or [0])):
    params = f"{r['parameters']:,}" if r["parameters"] else "-"
    wall = f"{statistics.mean(r['wall']):.0f} s" if r["wall"] else "-"
    lines.append(
        f"| {r['cell'].upper()} | "
        f"{'bidirectional' if r['bidirectional'] else 'one direction'} | "
        f"{r['pooling']} | {params} | {mean_std(r['val'])} | "
        f"{mean_std(r['test'])} | {wall} | {', '.join(r['status'])} |")
  lines += [
      f"| tf-idf 1-2 grams + logistic regression (C={bow['C']:g}, chosen "
      "on validation) | - | - | "
      f"{bow['features']:,} | {100 * bow['validation']:.1f} | "
      f"{100 * bow['test']:.1f} | - | done |",
      f"| always \"{major['label']}\" (the majority class) | - | - | 0 | - "
      f"| {100 * major['test']:.1f} | - | - |", "",
      f"![validation accuracy, mean over seeds]({png})", "", END]
  return "\n".join(lines)


def rerun_command(module: str, argv) -> str:
  """The command line that reruns a study (--report_only dropped: the
  report shows the command that runs it)."""
  args = argv if argv is not None else sys.argv[1:]
  return " ".join(["python -m", module,
                   *(a for a in args if a != "--report_only")])


def write_doc(doc: pathlib.Path, text: str, begin: str = BEGIN,
              end: str = END):
  """Replaces the part of `doc` between the markers `begin` and `end`
  (which `text` holds too), or writes `doc` whole if it has none."""
  if doc.exists() and begin in doc.read_text():
    old = doc.read_text()
    text = old[:old.index(begin)] + text + old[old.index(end) + len(end):]
  doc.parent.mkdir(parents=True, exist_ok=True)
  doc.write_text(text if text.endswith("\n") else text + "\n")


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--root", required=True)
  p.add_argument("--doc", required=True)
  p.add_argument("--cells", default=",".join(CELLS))
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--parallel", type=int, default=1)
  p.add_argument("--report_only", action="store_true")
  args, extra = p.parse_known_args(argv)
  extra = [a for a in extra if a != "--"]
  cells = [c for c in args.cells.split(",") if c]
  bad = [c for c in cells if c not in CELLS]
  if bad:
    print(f"error: --cells={args.cells!r}: unknown {bad}. Valid choices: "
          f"{', '.join(CELLS)}.", file=sys.stderr)
    return 2
  seeds = [int(s) for s in args.seeds.split(",") if s]
  root = pathlib.Path(args.root)
  config = str(pathlib.Path(__file__).resolve().parents[1] / CONFIG)
  todo = trials(cells, seeds)
  if not args.report_only:
    # The recipe as the study ran it, before word dropout, the weight
    # average and the ensemble joined it (docs/classification.md), so the
    # study reproduces.
    sweep.run(config, root, todo, args.parallel,
              [*RECIPE_BEFORE_REGULARISERS, *extra])
  splits = rt.split_rows(pathlib.Path(rt.manual_dir()) / rt.FILE_NAME)
  bow, major = bag_of_words(splits), majority(splits)
  (root / "baselines.json").write_text(json.dumps(
      {"bag_of_words": bow, "majority": major}, indent=2))
  rows = summarise(root, cells, seeds)
  doc = pathlib.Path(args.doc)
  png = plot(rows, doc.with_name("sentiment_study.png"))
  # The command that runs the study (with --report_only it re-reads the
  # same trials: the table is the one that command prints).
  command = rerun_command("experiments.sentiment_study", argv)
  text = markdown(rows, bow, major, {k: len(v) for k, v in splits.items()},
                  seeds, command, png.name)
  write_doc(doc, text)
  print(text)
  failed = [r for row in rows for r in row["runs"] if r["status"] != "done"]
  for r in failed:
    print(f"FAILED {r['name']}: {r['status']}", file=sys.stderr)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
