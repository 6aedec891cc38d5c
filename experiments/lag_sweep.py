"""Lag sweep: which cell carries information over how many steps?

Trains configs/lstm_adding.py and configs/lstm_copy_memory.py (one 64-unit
layer) for every cell x lag, one workdir per trial:
runs/lag_sweep/<task>_<cell>_lag<lag>. A trial whose workdir has
status.json {"status": "done"} is not run again, and an interrupted one
resumes from its last checkpoint, so the command can be rerun at will.
Then writes the report (docs/lag_sweep.md between its results markers, and
two PNGs beside it) from what the workdirs hold.

XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
    taskset -c 1 python -m experiments.lag_sweep
  python -m experiments.lag_sweep --report_only     # rewrite the report only
  python -m experiments.lag_sweep --tasks=adding --cells=lstm --lags=25 \
    --adding_steps=200 --root=/tmp/sweep --doc=/tmp/sweep/report.md
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import time
from typing import Any

from rnnlab import cli
from rnnlab.errors import UserError

ROOT = pathlib.Path(__file__).resolve().parents[1]
TASKS = ("adding", "copy_memory")
# What the report shows of each task's test metrics, and the solved rule
# (rnnlab.tasks.synthetic).
METRIC = {"adding": ("mse", "test MSE"),
          "copy_memory": ("accuracy", "test accuracy")}
RESULTS_BEGIN = "<!-- lag_sweep results: begin (written by the script) -->"
RESULTS_END = "<!-- lag_sweep results: end -->"
TRIAL_FILE = "trial.json"  # the sweep's own record: wall time, date


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--tasks", default=",".join(TASKS))
  p.add_argument("--cells", default="rnn,lstm,gru")
  p.add_argument("--lags", default="25,50,100,200")
  p.add_argument("--adding_steps", type=int, default=4000,
                 help="Training steps of each adding trial.")
  p.add_argument("--copy_steps", type=int, default=4000,
                 help="Training steps of each copy_memory trial.")
  p.add_argument("--eval_every", type=int, default=250)
  p.add_argument("--root", default=str(ROOT / "runs" / "lag_sweep"))
  p.add_argument("--doc", default=str(ROOT / "docs" / "lag_sweep.md"))
  p.add_argument("--report_only", action="store_true",
                 help="Write the report from the existing workdirs.")
  args = p.parse_args(argv)
  try:
    args.tasks = cli.comma_choices(args.tasks, TASKS, "--tasks")
    args.cells = cli.comma_choices(args.cells, ("rnn", "lstm", "gru"),
                                   "--cells")
  except UserError as e:
    raise SystemExit(str(e)) from None
  try:
    args.lags = [int(x) for x in args.lags.split(",") if x]
  except ValueError:
    p.error(f"--lags={args.lags!r}: give comma-separated integers.")
  for name in ("adding_steps", "copy_steps", "eval_every"):
    if getattr(args, name) < 1:
      p.error(f"--{name} must be >= 1.")
  return args


def trials(args) -> list[tuple[str, str, int]]:
  return [(t, c, l) for t in args.tasks for c in args.cells
          for l in args.lags]


def workdir_of(root, task: str, cell: str, lag: int) -> pathlib.Path:
  return pathlib.Path(root) / f"{task}_{cell}_lag{lag}"


def trial_config(task: str, cell: str, lag: int, steps: int,
                 eval_every: int):
  from rnnlab import recipes  # pylint: disable=g-import-not-at-top
  c = recipes.synthetic_config(task, f"cell={cell},lag={lag}")
  c.train.steps = steps
  c.train.eval_every = min(eval_every, steps)
  c.train.log_every = min(100, steps)
  # Checkpoints only for resuming an interrupted sweep: each costs time.
  c.train.checkpoint_every = min(4 * eval_every, steps)
  c.train.progress_bar = False
  return c


def read_json(path: pathlib.Path) -> Any:
  return json.loads(path.read_text()) if path.exists() else None


def is_done(workdir: pathlib.Path) -> bool:
  status = read_json(workdir / "status.json")
  return bool(status) and status.get("status") == "done"


def run_trial(task, cell, lag, args) -> None:
  from rnnlab import train  # pylint: disable=g-import-not-at-top
  workdir = workdir_of(args.root, task, cell, lag)
  if is_done(workdir):
    print(f"skip {workdir.name}: done", flush=True)
    return
  steps = args.adding_steps if task == "adding" else args.copy_steps
  config = trial_config(task, cell, lag, steps, args.eval_every)
  print(f"run  {workdir.name}: {steps} steps", flush=True)
  start = time.perf_counter()
  results = train.train_and_evaluate(config, workdir)
  wall = time.perf_counter() - start
  test = results["eval"]["test"]
  (workdir / TRIAL_FILE).write_text(json.dumps({
      "wall_seconds": wall,
      "finished": datetime.datetime.now().isoformat(timespec="seconds"),
      "command": sys.argv, "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "cpu_affinity": sorted(os.sched_getaffinity(0)),
  }, indent=2) + "\n")
  print(f"done {workdir.name}: {_fmt_metrics(task, test)}, "
        f"{wall:.0f} s", flush=True)


def _fmt_metrics(task, m) -> str:
  key, _ = METRIC[task]
  return f"{key}={m[key]:.4g} solved={bool(m['solved'])}"


# --- the report ---------------------------------------------------------------


def collect(args) -> list[dict[str, Any]]:
  """One row per finished trial, from its workdir."""
  rows = []
  for task, cell, lag in trials(args):
    workdir = workdir_of(args.root, task, cell, lag)
    if not is_done(workdir):
      continue
    status = read_json(workdir / "status.json")
    trial = read_json(workdir / TRIAL_FILE) or {}
    records = [json.loads(line) for line in
               (workdir / "metrics.jsonl").read_text().splitlines() if line]
    key, _ = METRIC[task]
    curve = [(r["step"], r[key]) for r in records if r["split"] == "val"]
    solved_at = next((r["step"] for r in records
                      if r["split"] == "val" and r["solved"]), None)
    rows.append({"task": task, "cell": cell, "lag": lag,
                 "steps": status["step"], "test": status["eval"]["test"],
                 "val_curve": curve, "val_solved_at": solved_at,
                 "wall_seconds": trial.get("wall_seconds"),
                 "finished": trial.get("finished")})
  return rows


def machine() -> str:
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(l.split(":", 1)[1].strip() for l in f
                 if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return f"{cpu}, {os.cpu_count()} cores ({platform.system()})"


def _wall(seconds) -> str:
  if seconds is None:
    return "n/a"
  minutes, s = divmod(round(seconds), 60)
  return f"{minutes} min {s:02d} s" if minutes else f"{s} s"


def results_markdown(rows, args, png_names) -> str:
  from rnnlab.tasks import synthetic  # pylint: disable=g-import-not-at-top
  out = []
  for task in args.tasks:
    task_rows = [r for r in rows if r["task"] == task]
    if not task_rows:
      continue
    key, label = METRIC[task]
    if task == "adding":
      rule = (f"test MSE < {synthetic.ADDING_SOLVED_MSE} (always predicting "
              "1 scores 1/6 ~ 0.167)")
    else:
      rule = (f"test accuracy on the recalled symbols >= "
              f"{synthetic.COPY_SOLVED_ACCURACY:.0%} (chance 1/8 = 12.5%)")
    out.append(f"### {task}\n\nSolved = {rule}.\n")
    header = ["cell", "lag", "steps", label]
    if task == "copy_memory":
      header += ["test loss (nats)", "sequences all right"]
    header += ["solved", "val first solved at step", "wall"]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "---|" * len(header))
    for r in task_rows:
      t = r["test"]
      cells = [r["cell"], str(r["lag"]), f"{r['steps']:,}",
               f"{t[key]:.3g}" if key == "mse" else f"{t[key]:.1%}"]
      if task == "copy_memory":
        cells += [f"{t['loss']:.3f}", f"{t['sequence_accuracy']:.1%}"]
      cells += ["yes" if t["solved"] else "no",
                f"{r['val_solved_at']:,}" if r["val_solved_at"] else "-",
                _wall(r["wall_seconds"])]
      out.append("| " + " | ".join(cells) + " |")
    out.append("")
    largest = []
    for cell in args.cells:
      solved = [r["lag"] for r in task_rows
                if r["cell"] == cell and r["test"]["solved"]]
      ran = [r["lag"] for r in task_rows if r["cell"] == cell]
      if ran:
        largest.append(f"{cell}: {max(solved) if solved else 'none'} "
                       f"(of {', '.join(map(str, sorted(ran)))})")
    out.append("Largest lag solved: " + "; ".join(largest) + ".\n")
  total = sum(r["wall_seconds"] or 0 for r in rows)
  days = sorted({r["finished"][:10] for r in rows if r["finished"]})
  finished = (" to ".join(sorted({days[0], days[-1]})) if days else "n/a")
  out.append(
      f"{len(rows)} trials, {_wall(total)} of training wall time in all "
      f"(each trial's time includes compilation, evaluation and "
      f"checkpoints; a trial resumed after an interruption counts only its "
      f"last part). Finished {finished} on {machine()}.\n")
  for name in png_names:
    out.append(f"![{name}]({name})\n")
  return "\n".join(out)


def plot(rows, args, doc: pathlib.Path) -> list[str]:
  """<doc stem>.png (final test metric vs lag) and <doc stem>_curves.png
  (validation metric vs step, one panel per task and lag)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from rnnlab.data import synthetic as data
  from rnnlab.tasks import synthetic  # pylint: disable=g-import-not-at-top
  tasks = [t for t in args.tasks if any(r["task"] == t for r in rows)]
  if not tasks:
    return []
  colors = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}
  names = []

  fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4),
                           squeeze=False)
  for ax, task in zip(axes[0], tasks):
    key, label = METRIC[task]
    for cell in args.cells:
      points = sorted((r["lag"], r["test"][key]) for r in rows
                      if r["task"] == task and r["cell"] == cell)
      if points:
        ax.plot(*zip(*points), marker="o", color=colors.get(cell),
                label=cell)
    if task == "adding":
      ax.axhline(data.ADDING_BASELINE_MSE, color="gray", ls="--",
                 label="predict 1 (1/6)")
      ax.axhline(synthetic.ADDING_SOLVED_MSE, color="gray", ls=":",
                 label="solved below")
      ax.set_yscale("log")
    else:
      ax.axhline(1 / 8, color="gray", ls="--", label="chance (1/8)")
      ax.axhline(synthetic.COPY_SOLVED_ACCURACY, color="gray", ls=":",
                 label="solved above")
      ax.set_ylim(0, 1.02)
    ax.set_xscale("log", base=2)
    ax.set_xticks(args.lags, [str(l) for l in args.lags])
    ax.set_xlabel("lag")
    ax.set_ylabel(label)
    ax.set_title(task)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  name = f"{doc.stem}.png"
  fig.savefig(doc.parent / name, dpi=100)
  plt.close(fig)
  names.append(name)

  fig, axes = plt.subplots(len(tasks), len(args.lags),
                           figsize=(3.6 * len(args.lags), 3 * len(tasks)),
                           squeeze=False, sharey="row")
  for row, task in zip(axes, tasks):
    key, label = METRIC[task]
    for ax, lag in zip(row, args.lags):
      for r in rows:
        if r["task"] == task and r["lag"] == lag and r["val_curve"]:
          ax.plot(*zip(*r["val_curve"]), color=colors.get(r["cell"]),
                  label=r["cell"])
      if task == "adding":
        ax.set_yscale("log")
        ax.axhline(synthetic.ADDING_SOLVED_MSE, color="gray", ls=":")
      else:
        ax.axhline(1 / 8, color="gray", ls="--")
        ax.set_ylim(0, 1.02)
      ax.set_title(f"{task}, lag {lag}", fontsize=9)
      ax.set_xlabel("step")
      ax.grid(alpha=0.3)
    row[0].set_ylabel(f"val {key}")
    row[0].legend(fontsize=8)
  fig.tight_layout()
  name = f"{doc.stem}_curves.png"
  fig.savefig(doc.parent / name, dpi=100)
  plt.close(fig)
  names.append(name)
  return names


def write_report(args) -> pathlib.Path:
  doc = pathlib.Path(args.doc)
  doc.parent.mkdir(parents=True, exist_ok=True)
  rows = collect(args)
  block = "\n".join([RESULTS_BEGIN, "",
                     results_markdown(rows, args, plot(rows, args, doc)),
                     RESULTS_END])
  if doc.exists() and RESULTS_BEGIN in doc.read_text():
    # Keep the hand-written text around the generated block.
    text = doc.read_text()
    head, rest = text.split(RESULTS_BEGIN, 1)
    tail = rest.split(RESULTS_END, 1)[1] if RESULTS_END in rest else ""
    doc.write_text(head + block + tail)
  else:
    doc.write_text(f"# Lag sweep\n\n{block}\n")
  return doc


def main(argv=None):
  args = parse_args(argv)
  if not args.report_only:
    for task, cell, lag in trials(args):
      run_trial(task, cell, lag, args)
  print(f"wrote {write_report(args)}")


if __name__ == "__main__":
  main()
