"""Regularisers against the sentiment recipe's overfitting, 3 seeds each:
word dropout (classify.word_dropout) and a moving average of the weights
(optim.ema_decay), alone and together, then both with an ensemble trained
in the run (classify.ensemble_size), for the GRU and the LSTM; and the
ensemble of each variant's seeds (mean of their class probabilities).

  python -m experiments.sentiment_regularisers --root=runs/sentiment_reg \
      --doc=docs/classification.md
  python -m experiments.sentiment_regularisers --root=/tmp/reg --seeds=0 \
      --cells=gru --doc=/tmp/reg/report.md -- --config.train.steps=20

Every trial is `configs/gru_rotten_tomatoes.py` with overrides, run through
rnnlab.sweep (done trials are skipped); its accuracies are those of its
best checkpoint, chosen on validation loss (<workdir>/best_eval.json). The
report replaces the part of --doc between this study's markers.
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
from typing import Any

import numpy as np

from experiments import sentiment_study as study
from rnnlab import sweep
from rnnlab.data import rotten_tomatoes as rt
from rnnlab.tasks import classify

BEGIN, END = ("<!-- sentiment-regularisers:begin -->",
              "<!-- sentiment-regularisers:end -->")

def _variant(word_dropout: float, ema_decay: float, members: int = 1):
  return {"classify.word_dropout": word_dropout, "optim.ema_decay": ema_decay,
          "classify.ensemble_size": members}


# name -> overrides on the config; every variant sets every key, so the
# study does not depend on the config's defaults.
VARIANTS = {
    "neither": _variant(0.0, 0.0),
    "word dropout 0.2": _variant(0.2, 0.0),
    "weight average 0.99": _variant(0.0, 0.99),
    "both": _variant(0.2, 0.99),
    "both, 3 members": _variant(0.2, 0.99, 3),
}


def trials(cells, seeds) -> list[dict[str, Any]]:
  return [{"model.cell": cell, **overrides, "seed": seed}
          for cell in cells for overrides in VARIANTS.values()
          for seed in seeds]


def ensemble(workdirs, rows: dict[str, list[dict[str, str]]]
             ) -> dict[str, float]:
  """Accuracy of the mean class probabilities of the runs in `workdirs`
  (their best checkpoints) on the validation and test rows."""
  splits = ("validation", "test")
  total, classes = {s: 0.0 for s in splits}, None
  for workdir in workdirs:  # each run loaded once, for both splits
    run = classify.load_text_classifier(workdir)
    classes = run.classes
    for split in splits:
      total[split] = total[split] + np.asarray(
          run.probabilities([r["text"] for r in rows[split]]))
  out = {}
  for split in splits:
    predicted = [classes[i] for i in np.argmax(total[split], axis=1)]
    out[split] = float(np.mean([p == r["category"] for p, r in
                                zip(predicted, rows[split])]))
  return out


def summarise(root, cells, seeds, rows) -> list[dict[str, Any]]:
  out = []
  for cell in cells:
    for name, overrides in VARIANTS.items():
      group = [{"model.cell": cell, **overrides, "seed": s} for s in seeds]
      runs = [sweep.read_trial(root / sweep.trial_name(t)) for t in group]
      best = [study._best_eval(r["workdir"]) for r in runs]  # pylint: disable=protected-access
      done = [r["workdir"] for r, b in zip(runs, best) if b]
      out.append({
          "cell": cell, "variant": name,
          "val": [b["eval"]["val"]["accuracy"] for b in best if b],
          "test": [b["eval"]["test"]["accuracy"] for b in best if b],
          "wall": [r["seconds"] for r in runs if r["seconds"]],
          "cores": sorted({r["cpus"] for r in runs if r["cpus"]}),
          "ensemble": ensemble(done, rows) if len(done) > 1 else None,
          "status": sorted({r["status"] for r in runs})})
  return out


def markdown(rows, bow, command: str, seeds) -> str:
  lines = [
      BEGIN,
      f"Measured {study.datetime.date.today()} on {study.cpu_model()}, "
      "2 cores, one run at a time (a wall marked \"1 core\": pinned to "
      "one core while another run used the other):",
      "", "```", command, "```", "",
      f"Accuracy (%) at the checkpoint chosen on validation loss, mean ± "
      f"std over seeds {', '.join(map(str, seeds))}; \"members\" are "
      "trained side by side in one run (classify.ensemble_size); the seeds' "
      "ensemble averages the class probabilities of a variant's runs.", "",
      "| Cell | Variant | Validation | Test | Seeds' ensemble val / test | "
      "Wall per run |", "|---|---|---|---|---|---|"]
  for r in rows:
    ens = r["ensemble"]
    ens_text = (f"{100 * ens['validation']:.1f} / {100 * ens['test']:.1f}"
                if ens else "n/a")
    wall = (f"{statistics.mean(r['wall']):.0f} s" if r["wall"] else "n/a")
    if r["wall"] and r["cores"] == [1]:
      wall += " (1 core)"
    lines.append(f"| {r['cell'].upper()} | {r['variant']} | "
                 f"{study.mean_std(r['val'])} | "
                 f"{study.mean_std(r['test'])} | {ens_text} | {wall} |")
  lines += ["", f"Bag of words on the same splits (tf-idf 1-2 grams, "
                f"logistic regression, C={bow['C']} chosen on validation): "
                f"{100 * bow['validation']:.1f} validation, "
                f"{100 * bow['test']:.1f} test.", END]
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--root", required=True)
  p.add_argument("--doc", required=True)
  p.add_argument("--cells", default="gru,lstm")
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--report_only", action="store_true")
  args, extra = p.parse_known_args(argv)
  extra = [a for a in extra if a != "--"]
  cells = [c for c in args.cells.split(",") if c]
  bad = [c for c in cells if c not in study.CELLS]
  if bad:
    print(f"error: --cells={args.cells!r}: unknown {bad}. Valid choices: "
          f"{', '.join(study.CELLS)}.", file=sys.stderr)
    return 2
  seeds = [int(s) for s in args.seeds.split(",") if s]
  root = pathlib.Path(args.root)
  config = str(pathlib.Path(__file__).resolve().parents[1] / study.CONFIG)
  if not args.report_only:
    sweep.run(config, root, trials(cells, seeds), 1, extra)
  rows = rt.split_rows(pathlib.Path(rt.manual_dir()) / rt.FILE_NAME)
  summary = summarise(root, cells, seeds, rows)
  command = study.rerun_command("experiments.sentiment_regularisers", argv)
  text = markdown(summary, study.bag_of_words(rows), command, seeds)
  study.write_doc(pathlib.Path(args.doc), text.rstrip("\n"), BEGIN, END)
  print(text)
  failed = [r for r in summary if r["status"] != ["done"]]
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
