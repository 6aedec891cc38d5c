"""The controlled attention study of docs/attention.md: every attention
score and none, with one encoder for all (the recipe's bidirectional GRU,
directions summed to the decoder's width), the same number of steps, and
3 seeds, on addition, dates and the number-words translation.

  python -m experiments.attention_study --root=runs/attention \
      --doc=docs/attention.md
  python -m experiments.attention_study --root=runs/attention \
      --problems=addition --doc=docs/attention.md
  python -m experiments.attention_study --root=runs/attention \
      --steps=dates:1000,numbers:1000 --doc=docs/attention.md
  python -m experiments.attention_study --root=/tmp/att --seeds=0 \
      --problems=addition --attentions=none,dot --doc=/tmp/att/report.md \
      -- --config.train.steps=20

Every trial is configs/gru_seq2seq_<problem>.py with seq2seq.attention and
the seed overridden, run through rnnlab.sweep (done trials are skipped, so
a rerun resumes). --steps=problem:N gives one problem's trials N steps
instead of the config's train.steps (the same N for every attention).
Figures are the final evaluation's (the trial's last step): exact match of
greedy and 4-beam decoding on the held-out test set, and for the
translation corpus BLEU and chrF; the copy-the-source baseline is
computed on the same test set. A --doc holding the study's markers gets
the part between them replaced.
"""
from __future__ import annotations

import argparse
import math
import pathlib
import statistics
import sys
from typing import Any

from experiments import sentiment_study as study
from rnnlab import sweep
from rnnlab.models import seq2seq as seq2seq_model

PROBLEMS = ("addition", "dates", "numbers")
ATTENTIONS = seq2seq_model.ATTENTION_CHOICES
BEGIN, END = ("<!-- attention-study:begin -->",
              "<!-- attention-study:end -->")
ROOT = pathlib.Path(__file__).resolve().parents[1]


def config_path(problem: str) -> str:
  return str(ROOT / "configs" / f"gru_seq2seq_{problem}.py")


def trials(attentions, seeds) -> list[dict[str, Any]]:
  return [{"seq2seq.attention": a, "seed": s}
          for a in attentions for s in seeds]


def summarise(root: pathlib.Path, problem: str, attentions, seeds
              ) -> list[dict[str, Any]]:
  rows = []
  for attention in attentions:
    runs = [sweep.read_trial(root / problem / sweep.trial_name(t))
            for t in trials([attention], seeds)]
    get = lambda key: [r["final"].get(key, math.nan) for r in runs]  # pylint: disable=cell-var-from-loop
    rows.append({"problem": problem, "attention": attention,
                 "greedy": get("test/accuracy"),
                 "beam": get("test/beam4_accuracy"),
                 "bleu": get("test/bleu"), "chrf": get("test/chrf"),
                 "wall": [r["seconds"] for r in runs if r["seconds"]],
                 "cpus": sorted({r["cpus"] for r in runs if r["cpus"]}),
                 "steps": sorted({trial_steps(root / problem /
                                              sweep.trial_name(t))
                                  for t in trials([attention], seeds)}
                                 - {None}),
                 "status": sorted({r["status"] for r in runs})})
  return rows


def trial_steps(workdir: pathlib.Path) -> int | None:
  """The step count a trial ran with, from its own config.json."""
  from rnnlab import rundir  # pylint: disable=g-import-not-at-top
  if not (workdir / "config.json").exists():
    return None
  return int(rundir.load_config(workdir).train.steps)


def parse_steps(text: str) -> dict[str, int]:
  """"dates:1000,numbers:1000" -> {"dates": 1000, "numbers": 1000}."""
  steps = {}
  for item in (x for x in text.split(",") if x):
    problem, sep, n = item.partition(":")
    if not sep or problem not in PROBLEMS or not n.isdigit() or int(n) < 1:
      raise ValueError(
          f"--steps: {item!r} is not problem:N with problem one of "
          f"{', '.join(PROBLEMS)} and N a positive integer.")
    steps[problem] = int(n)
  return steps


def copy_baseline(root: pathlib.Path, problem: str, attention: str, seeds
                  ) -> dict[str, list[float]]:
  """The copy-the-source scores on each seed's test split (the seed draws
  the held-out values), read from the trials' own config.json."""
  from rnnlab import rundir  # pylint: disable=g-import-not-at-top
  from rnnlab.tasks import seq2seq as seq2seq_task  # pylint: disable=g-import-not-at-top
  scores = {"bleu": [], "chrf": [], "exact_match": []}
  for t in trials([attention], seeds):
    workdir = root / problem / sweep.trial_name(t)
    if (workdir / "config.json").exists():
      task = seq2seq_task.Seq2SeqTask(rundir.load_config(workdir))
      for key, value in task.copy_baseline("test").items():
        scores[key].append(value)
  return scores


def markdown(rows, copies, seeds, command: str) -> str:
  lines = [BEGIN,
           f"Measured {study.datetime.date.today()} on {study.cpu_model()}, "
           "one run at a time:", "", "```", command, "```", "",
           f"Mean ± std over seeds {', '.join(map(str, seeds))}, test set, "
           "final step; wall clock per run (the whole command).", ""]
  for problem in dict.fromkeys(r["problem"] for r in rows):
    translation = problem == "numbers"
    head = "| Attention | Exact match, greedy (%) | 4-beam (%) |"
    rule = "|---|---|---|"
    if translation:
      head += " BLEU | chrF |"
      rule += "---|---|"
    steps = sorted({n for r in rows if r["problem"] == problem
                    for n in r["steps"]})
    cores = study.cores_note(n for r in rows if r["problem"] == problem
                             for n in r.get("cpus", ()))
    lines += [f"**{problem}**, {' / '.join(f'{n:,}' for n in steps)} steps",
              "", head + f" Wall per run{cores} |", rule + "---|"]
    for r in (r for r in rows if r["problem"] == problem):
      wall = f"{statistics.mean(r['wall']):.0f} s" if r["wall"] else "n/a"
      line = (f"| {r['attention']} | {study.mean_std(r['greedy'])} | "
              f"{study.mean_std(r['beam'])} |")
      if translation:
        line += f" {study.mean_std(r['bleu'], 1)} | {study.mean_std(r['chrf'], 1)} |"
      lines.append(line + f" {wall} |")
    if problem in copies:
      c = copies[problem]
      lines.append(f"| copy the source | {study.mean_std(c['exact_match'])} | | "
                   f"{study.mean_std(c['bleu'], 1)} | {study.mean_std(c['chrf'], 1)} "
                   "| |")
    lines.append("")
  lines.append(END)
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--root", required=True)
  p.add_argument("--doc", required=True)
  p.add_argument("--problems", default=",".join(PROBLEMS))
  p.add_argument("--attentions", default=",".join(ATTENTIONS))
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--steps", default="",
                 help="problem:N,... : N training steps for that problem's "
                 "trials instead of its config's train.steps.")
  p.add_argument("--report_only", action="store_true")
  args, extra = p.parse_known_args(argv)
  extra = [a for a in extra if a != "--"]
  problems = [x for x in args.problems.split(",") if x]
  attentions = [x for x in args.attentions.split(",") if x]
  for flag, names, valid in (("--problems", problems, PROBLEMS),
                             ("--attentions", attentions, ATTENTIONS)):
    bad = [n for n in names if n not in valid]
    if bad or not names:
      print(f"error: {flag}: unknown {bad}. Valid choices: "
            f"{', '.join(valid)}.", file=sys.stderr)
      return 2
  try:
    steps = parse_steps(args.steps)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  seeds = [int(s) for s in args.seeds.split(",") if s]
  root = pathlib.Path(args.root)
  rows, copies = [], {}
  for problem in problems:
    if not args.report_only:
      overrides = ([f"--config.train.steps={steps[problem]}"]
                   if problem in steps else [])
      sweep.run(config_path(problem), root / problem,
                trials(attentions, seeds), 1, extra + overrides)
    rows += summarise(root, problem, attentions, seeds)
    if problem == "numbers":
      copies[problem] = copy_baseline(root, problem, attentions[0], seeds)
  command = study.rerun_command("experiments.attention_study", argv)
  text = markdown(rows, copies, seeds, command)
  study.write_doc(pathlib.Path(args.doc), text.rstrip("\n"), BEGIN, END)
  print(text)
  failed = [r for r in rows if r["status"] != ["done"]]
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
