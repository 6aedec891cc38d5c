"""Config sweeps: expand, run (N at a time, done trials skipped), report.

A config defines its sweep beside `get_config`, in the big_vision style:

    def get_sweep(arg):
      return {"model.cell": ["rnn", "lstm", "gru"], "seed": [0, 1, 2]}  # grid
      # or a list of override dicts: [{"model.cell": "gru"}, ...]

  python -m rnnlab.sweep --config=experiments/cell_size_sweep.py:runlocal --root=runs/sweep
  python -m rnnlab.sweep --config=... --root=runs/sweep --parallel=2
  python -m rnnlab.sweep --config=... --root=runs/sweep --report_only --metric=val/loss
  python -m rnnlab.sweep --config=... --root=runs/sweep --pending    # e.g. "0,2-3"
  python -m rnnlab.sweep --config=... --root=runs/sweep --trial=2    # one trial

Each trial runs `python -m rnnlab.main --config=<config> --workdir=<root>/<name>
--config.<key>=<value> ...` in its own process, so a crash stays in its
trial. A trial whose status.json says "done" is skipped on a rerun; an
interrupted one resumes from its checkpoint. Failed trials are listed at the
end (exit code 1), never hidden; --report_only lists the trials not done and
exits 1 too. The report (<root>/report.md and <root>/curves.png) reads each
trial's config.json, status.json and metrics.jsonl.

Trial indices are the order of get_sweep's expansion; <root>/trials.json
records them (index -> name, overrides), written by a full run and by
--pending. --pending prints the indices not yet done as a SLURM --array list
(ranges, "" when none). --trial=K runs only trial K (exit 1 if it fails, no
report), refusing an index outside the sweep and a trials.json that lists
other trials than the config now expands to (the sweep changed since the
array was submitted). `./launch.sh slurm-sweep` submits the pending trials as
a job array whose task K runs `--trial=$SLURM_ARRAY_TASK_ID`; the index is
passed explicitly rather than read from the environment here, so a full
sweep started by hand inside an array allocation still runs every trial.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib.util
import itertools
import json
import math
import os
import pathlib
import re
import subprocess
import sys
import time
from typing import Any, Sequence

from rnnlab import base_config
from rnnlab.errors import UserError

Overrides = dict[str, Any]


def load_sweep(config_spec: str) -> list[Overrides]:
  """The trials of `path.py[:arg]`'s get_sweep(arg), as override dicts."""
  path, _, arg = config_spec.partition(":")
  file = pathlib.Path(path)
  if not file.is_file():
    raise UserError(f"Config file {path!r} not found.")
  spec = importlib.util.spec_from_file_location(f"_sweep_{file.stem}", file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_sweep"):
    raise UserError(f"{path} defines no get_sweep(arg): nothing to sweep. "
                    "Add one returning {key: [values]} or a list of dicts.")
  return expand(module.get_sweep(arg))


def expand(sweep: dict[str, Sequence[Any]] | Sequence[Overrides]
           ) -> list[Overrides]:
  """A grid {key: [values]} -> its product; a list of dicts as it is."""
  if isinstance(sweep, dict):
    for key, values in sweep.items():
      if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise UserError(f"Sweep key {key!r}: give a list of values, not "
                        f"{values!r}.")
    keys = list(sweep)
    trials = [dict(zip(keys, combo))
              for combo in itertools.product(*sweep.values())]
  else:
    trials = [dict(t) for t in sweep]
  if not trials:
    raise UserError("The sweep has no trials.")
  for key in {k for t in trials for k in t}:
    renamed = base_config.renamed_key_error(key)
    if renamed:  # before any trial runs
      raise renamed
  names = [trial_name(t) for t in trials]
  if len(set(names)) != len(names):
    raise UserError(f"The sweep repeats a trial: {sorted(names)}.")
  return trials


def trial_name(overrides: Overrides) -> str:
  """A directory name: "model.cell=gru,seed=0" -> "cell=gru,seed=0"."""
  parts = [f"{k.split('.')[-1]}={_value_text(v)}"
           for k, v in overrides.items()]
  return re.sub(r"[^A-Za-z0-9=,._+-]", "_", ",".join(parts)) or "default"


def _value_text(v) -> str:
  return ",".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v)


def override_flags(overrides: Overrides) -> list[str]:
  """{"model.cell": "gru"} -> ["--config.model.cell=gru"]."""
  # ml_collections parses overrides as Python literals.
  return [f"--config.{k}=" + (repr(tuple(v)) if isinstance(v, (tuple, list))
                              else str(v)) for k, v in overrides.items()]


def trial_command(config_spec: str, workdir: pathlib.Path,
                  overrides: Overrides, extra: Sequence[str] = ()
                  ) -> list[str]:
  return [sys.executable, "-m", "rnnlab.main", f"--config={config_spec}",
          f"--workdir={workdir}", "--config.train.progress_bar=False",
          *override_flags(overrides), *extra]


def status_of(workdir: pathlib.Path) -> str:
  try:
    return json.loads((workdir / "status.json").read_text())["status"]
  except (OSError, ValueError, KeyError):
    return "not started"


@dataclasses.dataclass
class TrialResult:
  name: str
  status: str
  seconds: float | None  # None: skipped (already done)


def run_trial(config_spec: str, root: pathlib.Path, overrides: Overrides,
              extra: Sequence[str] = ()) -> TrialResult:
  """Runs one trial in its own process, unless it is done already."""
  name = trial_name(overrides)
  workdir = root / name
  if status_of(workdir) == "done":
    print(f"[sweep] {name}: done before, skipped", flush=True)
    return TrialResult(name, "done", None)
  workdir.mkdir(parents=True, exist_ok=True)
  t0 = time.perf_counter()
  with (workdir / "sweep.log").open("a") as log:
    code = subprocess.run(trial_command(config_spec, workdir, overrides,
                                        extra),
                          stdout=log, stderr=subprocess.STDOUT).returncode
  seconds = time.perf_counter() - t0
  status = status_of(workdir) if code == 0 else (
      f"{status_of(workdir)} (exit {code})")
  print(f"[sweep] {name}: {status} in {seconds:.0f} s", flush=True)
  (workdir / "trial.json").write_text(json.dumps(
      {"overrides": overrides, "seconds": seconds, "exit_code": code}))
  return TrialResult(name, status, seconds)


def run(config_spec: str, root: pathlib.Path, trials: list[Overrides],
        parallel: int = 1, extra: Sequence[str] = ()) -> list[TrialResult]:
  """Runs the trials not yet done, `parallel` at a time."""
  root.mkdir(parents=True, exist_ok=True)
  with concurrent.futures.ThreadPoolExecutor(max(1, parallel)) as pool:
    return list(pool.map(
        lambda t: run_trial(config_spec, root, t, extra), trials))


# --- trial indices (SLURM job arrays) -----------------------------------------

def write_manifest(root: pathlib.Path, config_spec: str,
                   trials: list[Overrides]) -> pathlib.Path:
  """<root>/trials.json: what each array index runs."""
  root.mkdir(parents=True, exist_ok=True)
  path = root / "trials.json"
  # One line per trial, to be read by eye ("which trial is task 7?").
  text = (f'{{"config": {json.dumps(config_spec)}, "trials": {{\n' +
          ",\n".join(f'  "{i}": ' + json.dumps(
              {"name": trial_name(t), "overrides": t})
                     for i, t in enumerate(trials)) + "\n}}")
  # Atomic, as array tasks may read it while a resubmission rewrites it.
  tmp = path.with_name(f".trials.json.{os.getpid()}")
  tmp.write_text(text + "\n")
  os.replace(tmp, path)
  return path


def pending(root: pathlib.Path, trials: list[Overrides]) -> list[int]:
  """Indices of the trials whose status.json does not say "done"."""
  return [i for i, t in enumerate(trials)
          if status_of(root / trial_name(t)) != "done"]


def index_ranges(indices: Sequence[int]) -> str:
  """[0, 2, 3, 4, 7] -> "0,2-4,7" (SLURM's --array syntax)."""
  parts = []
  for _, group in itertools.groupby(enumerate(sorted(indices)),
                                    lambda p: p[1] - p[0]):
    group = [i for _, i in group]
    parts.append(str(group[0]) if len(group) == 1
                 else f"{group[0]}-{group[-1]}")
  return ",".join(parts)


def select_trial(root: pathlib.Path, trials: list[Overrides],
                 index: int) -> Overrides:
  """Trial `index`, checked against the range and <root>/trials.json."""
  if not 0 <= index < len(trials):
    raise UserError(f"--trial={index} is out of range: this sweep has "
                    f"{len(trials)} trials, indices 0-{len(trials) - 1}.")
  manifest = root / "trials.json"
  if manifest.exists():
    listed = {int(i): t["name"] for i, t in
              json.loads(manifest.read_text())["trials"].items()}
    if listed != {i: trial_name(t) for i, t in enumerate(trials)}:
      raise UserError(
          f"{manifest} lists other trials than the config's get_sweep now "
          f"gives (trial {index}: {listed.get(index)!r} there, "
          f"{trial_name(trials[index])!r} now): the sweep changed since it "
          "was written. Resubmit (launch.sh slurm-sweep rewrites it) or use "
          "another --root.")
  return trials[index]


def trial_status(workdir: pathlib.Path) -> str:
  """status.json's status, with the exit code of a trial that failed."""
  status = status_of(workdir)
  try:
    code = json.loads((workdir / "trial.json").read_text())["exit_code"]
  except (OSError, ValueError, KeyError):
    code = 0
  return f"{status} (exit {code})" if code else status


# --- report -------------------------------------------------------------------

def read_trial(workdir: pathlib.Path) -> dict[str, Any]:
  from rnnlab import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  trial = {"name": workdir.name, "workdir": workdir,
           "status": status_of(workdir), "records": [],
           "final": {}, "seconds": None}
  if (workdir / "trial.json").exists():
    meta = json.loads((workdir / "trial.json").read_text())
    trial["seconds"], trial["overrides"] = meta["seconds"], meta["overrides"]
  trial["records"] = metrics_lib.read_metrics(workdir)
  # The last value of every split/metric, e.g. "val/loss", "test/accuracy".
  for r in trial["records"]:
    for k, v in r.items():
      if k not in ("step", "split") and isinstance(v, (int, float)):
        trial["final"][f"{r['split']}/{k}"] = v
  return trial


def metric_value(trial, metric: str) -> float:
  return trial["final"].get(metric, math.nan)


def report(root: pathlib.Path, trials: list[Overrides], metric: str,
           mode: str = "min") -> pathlib.Path:
  """Writes <root>/report.md (sorted by `metric`) and <root>/curves.png."""
  if mode not in ("min", "max"):
    raise UserError(f"Unknown sort mode {mode!r}. Valid choices: 'min', "
                    "'max'.")
  rows = [read_trial(root / trial_name(t)) for t in trials]
  sign = 1 if mode == "min" else -1
  rows.sort(key=lambda r: (math.isnan(metric_value(r, metric)),
                           sign * metric_value(r, metric)))
  keys = list(trials[0])
  lines = [f"| {' | '.join(keys)} | {metric} | step | status | wall |",
           "|" + "---|" * (len(keys) + 4)]
  overrides_of = {trial_name(t): t for t in trials}
  for r in rows:
    values = overrides_of[r["name"]]
    step = max((x["step"] for x in r["records"]), default=0)
    wall = f"{r['seconds']:.0f} s" if r["seconds"] else "-"
    lines.append(f"| {' | '.join(_value_text(values[k]) for k in keys)} | "
                 f"{metric_value(r, metric):.4g} | {step} | {r['status']} | "
                 f"{wall} |")
  out = root / "report.md"
  out.write_text("\n".join(lines) + "\n")
  plot_curves(rows, metric, root / "curves.png")
  return out


def plot_curves(rows, metric: str, path: pathlib.Path) -> pathlib.Path:
  """One validation curve of `metric` ("split/key") per trial."""
  fig, (ax,) = figure(1, (7, 4.5))
  draw_curves(ax, {r["name"]: [r] for r in rows}, metric)
  return save_figure(fig, path)


def draw_curves(ax, groups: dict[str, list[dict[str, Any]]], metric: str):
  """On `ax`, `metric` ("split/key") against step: one line per group of
  trials (`read_trial`'s), their mean at each step (e.g. over seeds)."""
  split, _, key = metric.partition("/")
  for label, trials in groups.items():
    by_step: dict[int, list[float]] = {}
    for trial in trials:
      for x in trial["records"]:
        if x["split"] == split and key in x:
          by_step.setdefault(x["step"], []).append(x[key])
    if by_step:
      steps = sorted(by_step)
      ax.plot(steps, [sum(by_step[s]) / len(by_step[s]) for s in steps],
              marker=".", label=label)
  ax.set_xlabel("step")
  ax.set_ylabel(metric)
  ax.grid(alpha=0.3)
  if ax.lines:
    ax.legend(fontsize=7)


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def figure(columns: int, size: tuple[float, float]):
  """(figure, its `columns` axes side by side), for `draw_curves`."""
  fig, axes = _pyplot().subplots(1, columns, figsize=size, squeeze=False)
  return fig, list(axes[0])


def save_figure(fig, path: pathlib.Path) -> pathlib.Path:
  """Writes `fig` as a PNG at `path` and frees it."""
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  _pyplot().close(fig)
  return path


def main(argv=None) -> int:
  import argparse  # pylint: disable=g-import-not-at-top
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", required=True,
                 help="path.py[:arg]; its get_sweep(arg) defines the trials")
  p.add_argument("--root", required=True, help="one workdir per trial here")
  p.add_argument("--parallel", type=int, default=1)
  p.add_argument("--metric", default="val/loss",
                 help="split/key of metrics.jsonl to sort the report by")
  p.add_argument("--mode", default="min", choices=("min", "max"))
  what = p.add_mutually_exclusive_group()
  what.add_argument("--report_only", action="store_true")
  what.add_argument("--pending", action="store_true",
                    help="print the indices of the trials not done (SLURM "
                    "--array syntax) and write <root>/trials.json")
  what.add_argument("--trial", type=int, metavar="K",
                    help="run only trial K (a SLURM array task); no report")
  args, extra = p.parse_known_args(argv)
  bad = [a for a in extra if not a.startswith("--config.")]
  if bad:
    p.error(f"Unknown arguments {bad}; only --config.<key>=<value> "
            "overrides pass through to every trial.")
  root = pathlib.Path(args.root)
  try:
    trials = load_sweep(args.config)
    if args.pending:
      write_manifest(root, args.config, trials)
      print(index_ranges(pending(root, trials)))
      return 0
    if args.trial is not None:
      overrides = select_trial(root, trials, args.trial)
      # Concurrent array tasks: only write a missing manifest, never rewrite.
      if not (root / "trials.json").exists():
        write_manifest(root, args.config, trials)
      results = [run_trial(args.config, root, overrides, extra)]
    else:
      if not args.report_only:
        write_manifest(root, args.config, trials)
        results = run(args.config, root, trials, args.parallel, extra)
      else:  # e.g. after a job array: every trial not done is a failure
        results = [TrialResult(trial_name(t),
                               trial_status(root / trial_name(t)), None)
                   for t in trials]
      print(f"[sweep] report: {report(root, trials, args.metric, args.mode)}")
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  failed = [r for r in results if r.status != "done"]
  label = "NOT DONE" if args.report_only else "FAILED"
  for r in failed:
    log = root / r.name / "sweep.log"
    print(f"[sweep] {label} {r.name}: {r.status}" +
          (f" (log: {log})" if log.exists() else ""), file=sys.stderr)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
