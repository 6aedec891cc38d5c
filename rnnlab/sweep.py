"""Config sweeps and searches: run (N at a time, done ones skipped), report.

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

Searches. With --search, the config's get_search(arg) gives a space
{key: range} (rnnlab/search.py: LogUniform, Uniform, IntRange, Choice)
instead of get_sweep's grid:

  python -m rnnlab.sweep --config=... --root=runs/rs --search=random --trials=20
  python -m rnnlab.sweep ... --search=random --trials=20 --pending  # --trial=K
  python -m rnnlab.sweep --config=... --root=runs/tpe --search=tpe --trials=30
  python -m rnnlab.sweep --config=... --root=runs/tpe --search=tpe --report_only

Random search is a list of trials, a pure function of (space, --trials,
--seed), so it runs like a grid: --parallel, --pending and --trial=K (job
arrays) included, and a larger --trials adds trials after the same first
ones. TPE (Optuna) picks each trial from the results before it, so it runs
one at a time (no --trial, --pending or --parallel) and keeps its study in
<root>/study.db: a rerun resumes it, re-running a trial it left unfinished,
and stops once the study holds --trials trials (those already there count).
A failed TPE trial is told as failed and the search goes on; it stays in
the study (listed at the end, exit code 1), so a rerun does not retry it.

A search optimises the task's objective (Task.objective: val/loss, min, or
val/accuracy, max, for task "classify"), taken as the best value over each
trial's run; --metric and --mode override it. <root>/search.json records
the method, seed, space, objective and direction; a root holds one search
(a rerun with another method, seed or space is refused; one without
--seed, --metric and --mode keeps the recorded ones). The report ranks the
trials by the objective and adds <root>/params.png, the objective against
each searched parameter.
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
from rnnlab import search
from rnnlab.errors import UserError

Overrides = dict[str, Any]


def _config_module(config_spec: str):
  """(the module of `path.py[:arg]`, path, arg)."""
  path, _, arg = config_spec.partition(":")
  file = pathlib.Path(path)
  if not file.is_file():
    raise UserError(f"Config file {path!r} not found.")
  spec = importlib.util.spec_from_file_location(f"_sweep_{file.stem}", file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module, path, arg


def load_sweep(config_spec: str) -> list[Overrides]:
  """The trials of `path.py[:arg]`'s get_sweep(arg), as override dicts."""
  module, path, arg = _config_module(config_spec)
  if not hasattr(module, "get_sweep"):
    raise UserError(f"{path} defines no get_sweep(arg): nothing to sweep. "
                    "Add one returning {key: [values]} or a list of dicts.")
  return expand(module.get_sweep(arg))


def load_search(config_spec: str) -> dict[str, search.Range]:
  """The space {key: range} of `path.py[:arg]`'s get_search(arg), checked."""
  module, path, arg = _config_module(config_spec)
  if not hasattr(module, "get_search"):
    raise UserError(f"{path} defines no get_search(arg), which --search "
                    "needs: add one returning {key: range}, e.g. "
                    "{'optim.learning_rate': LogUniform(1e-4, 1e-2)} "
                    "(rnnlab.search).")
  return search.check_space(module.get_search(arg))


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
  # The CPUs it may use, since wall clocks compare only at the same count.
  (workdir / "trial.json").write_text(json.dumps(
      {"overrides": overrides, "seconds": seconds, "exit_code": code,
       "cpus": len(os.sched_getaffinity(0))}))
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
           "final": {}, "seconds": None, "cpus": None}
  if (workdir / "trial.json").exists():
    meta = json.loads((workdir / "trial.json").read_text())
    trial["seconds"], trial["overrides"] = meta["seconds"], meta["overrides"]
    trial["cpus"] = meta.get("cpus")  # absent before it was recorded
  trial["records"] = metrics_lib.read_metrics(workdir)
  # The last value of every split/metric, e.g. "val/loss", "test/accuracy".
  for r in trial["records"]:
    for k, v in r.items():
      if k not in ("step", "split") and isinstance(v, (int, float)):
        trial["final"][f"{r['split']}/{k}"] = v
  return trial


def metric_value(trial, metric: str) -> float:
  """The last value of `metric` ("split/key") in the run; nan if none."""
  return trial["final"].get(metric, math.nan)


def best_value(trial, metric: str, mode: str) -> float:
  """The min or max (`mode`) of `metric` ("split/key") over the run, the
  objective of a search; nan if the run never logged a finite one."""
  split, _, key = metric.partition("/")
  values = [x[key] for x in trial["records"]
            if x.get("split") == split and isinstance(x.get(key), (int, float))
            and math.isfinite(x[key])]
  if not values:
    return math.nan
  return min(values) if mode == "min" else max(values)


def objective_value(workdir: pathlib.Path, metric: str, mode: str) -> float:
  """`best_value` of a done trial, told to TPE. A run that logged no
  `metric` at all is a UserError listing what it did log (a mistyped
  --metric would fail every trial); a non-finite one is nan (failed)."""
  trial = read_trial(workdir)
  split, _, key = metric.partition("/")
  if not any(x.get("split") == split and key in x for x in trial["records"]):
    logged = sorted({f"{x.get('split')}/{k}" for x in trial["records"]
                     for k in x if k not in ("step", "split")})
    raise UserError(f"{workdir}/metrics.jsonl has no {metric!r} to optimise."
                    f" It has: {', '.join(logged) or 'nothing'}. Use "
                    "--metric=<one of those> --mode=min|max and another "
                    "--root.")
  return best_value(trial, metric, mode)


def report(root: pathlib.Path, trials: list[Overrides], metric: str,
           mode: str = "min", space: search.Space | None = None
           ) -> pathlib.Path:
  """Writes <root>/report.md (sorted by `metric`) and <root>/curves.png.

  A grid ranks trials by the last value of `metric`. A search (`space`
  given) ranks them by its objective, the best value (`mode`) over each
  run, and adds <root>/params.png: the objective against each parameter.
  """
  if mode not in ("min", "max"):
    raise UserError(f"Unknown sort mode {mode!r}. Valid choices: 'min', "
                    "'max'.")
  overrides_of = {trial_name(t): t for t in trials}  # TPE may repeat one
  rows = [read_trial(root / name) for name in overrides_of]
  if space is None:
    value = lambda r: metric_value(r, metric)
    column = metric
  else:
    value = lambda r: best_value(r, metric, mode)
    column = f"{mode} {metric}"
  sign = 1 if mode == "min" else -1
  rows.sort(key=lambda r: (math.isnan(value(r)), sign * value(r)))
  keys = list(space or trials[0])
  lines = [f"| {' | '.join(keys)} | {column} | step | status | wall |",
           "|" + "---|" * (len(keys) + 4)]
  for r in rows:
    values = overrides_of[r["name"]]
    step = max((x["step"] for x in r["records"]), default=0)
    wall = f"{r['seconds']:.0f} s" if r["seconds"] else "-"
    lines.append(f"| {' | '.join(_value_text(values[k]) for k in keys)} | "
                 f"{value(r):.4g} | {step} | {r['status']} | {wall} |")
  out = root / "report.md"
  out.write_text("\n".join(lines) + "\n")
  plot_curves(rows, metric, root / "curves.png")
  if space is not None:
    plot_params([(overrides_of[r["name"]], value(r)) for r in rows], space,
                column, root / "params.png")
  return out


def plot_params(points: list[tuple[Overrides, float]], space: search.Space,
                label: str, path: pathlib.Path) -> pathlib.Path:
  """The objective (y, `label`) against each searched parameter, one
  subplot per key of `space`: (overrides, objective) per trial, nan ones
  left out, the best (the first: `points` are ranked) in red. A log range
  gets a log x axis; a Choice its values as categories."""
  keys = list(space)
  columns = min(3, len(keys))
  rows = math.ceil(len(keys) / columns)
  fig, axes = _pyplot().subplots(rows, columns, squeeze=False,
                                 figsize=(4 * columns, 3.2 * rows))
  axes = list(axes.flat)
  finite = [(o, v) for o, v in points if not math.isnan(v)]
  for ax, key in zip(axes, keys):
    r = space[key]
    if isinstance(r, search.Choice):
      x = [r.values.index(o[key]) for o, _ in finite]
      ax.set_xticks(range(len(r.values)), [_value_text(v) for v in r.values],
                    fontsize=7)
      ax.set_xlim(-0.5, len(r.values) - 0.5)
    else:  # the whole range, to show what the trials left unexplored
      x = [o[key] for o, _ in finite]
      if r.log:
        ax.set_xscale("log")
        pad = (r.high / r.low) ** 0.03
        ax.set_xlim(r.low / pad, r.high * pad)
      else:
        pad = 0.03 * (r.high - r.low)
        ax.set_xlim(r.low - pad, r.high + pad)
    y = [v for _, v in finite]
    ax.scatter(x, y, s=18, alpha=0.7)
    if finite:
      ax.scatter(x[:1], y[:1], s=40, color="red")  # the best
    ax.set_xlabel(key)
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
  for ax in axes[len(keys):]:
    ax.set_visible(False)
  return save_figure(fig, path)


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
                 help="path.py[:arg]; its get_sweep(arg) defines the trials "
                 "(its get_search(arg) the space, with --search)")
  p.add_argument("--root", required=True, help="one workdir per trial here")
  p.add_argument("--parallel", type=int, default=1)
  p.add_argument("--metric", default=None,
                 help="split/key of metrics.jsonl to sort the report by "
                 "(default: val/loss for a grid; for a search the task's "
                 "objective, or the one search.json records)")
  p.add_argument("--mode", default=None, choices=("min", "max"),
                 help="with --metric (default: min for a grid)")
  p.add_argument("--search", choices=search.METHODS,
                 help="sample get_search's space instead of get_sweep's "
                 "grid: random, or TPE (Optuna, one trial at a time)")
  p.add_argument("--trials", type=int, metavar="N",
                 help="with --search: how many trials (TPE: in all, those "
                 "already in its study included)")
  p.add_argument("--seed", type=int, metavar="S",
                 help="with --search: the sampler's seed (default 0)")
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
    if args.search == "tpe":
      results = run_tpe_search(args, root, extra)
    else:
      trials, space, metric, mode = _trials(args, root)
      if args.pending:
        write_manifest(root, args.config, trials)
        print(index_ranges(pending(root, trials)))
        return 0
      if args.trial is not None:
        overrides = select_trial(root, trials, args.trial)
        # Concurrent array tasks: only write a missing manifest, never
        # rewrite it.
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
        print(f"[sweep] report: {report(root, trials, metric, mode, space)}")
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


# --- searches (rnnlab/search.py) ----------------------------------------------

def _trials(args, root: pathlib.Path):
  """(trials, space or None, metric, mode) of a grid or a random search;
  a random search's <root>/search.json written."""
  if args.search is None:
    if args.trials is not None or args.seed is not None:
      raise UserError("--trials and --seed apply to --search=random|tpe "
                      "only; a grid's trials come from get_sweep.")
    return (load_sweep(args.config), None, args.metric or "val/loss",
            args.mode or "min")
  space, seed, metric, mode = _search_setup(args, root)
  if args.trials is None:
    raise UserError("--search=random needs --trials=N, the number of "
                    "trials to draw.")
  # Through expand for its checks (names unique, none renamed).
  trials = expand(search.random_trials(space, args.trials, seed))
  search.write_search_json(
      root, _search_record(args, space, seed, metric, mode),
      same=("method", "seed", "space"))
  return trials, space, metric, mode


def _search_setup(args, root: pathlib.Path
                  ) -> tuple[dict[str, search.Range], int, str, str]:
  """(space, seed, metric, mode) of a --search. The seed is --seed, else
  the one <root>/search.json records, else 0; the objective --metric and
  --mode, else the recorded one, else the task's."""
  if args.seed is not None and args.seed < 0:
    raise UserError(f"--seed={args.seed} must be >= 0.")
  space = load_search(args.config)
  path = root / search.SEARCH_FILE
  saved = json.loads(path.read_text()) if path.exists() else {}
  seed = args.seed if args.seed is not None else saved.get("seed", 0)
  if args.metric is None and args.mode is None and saved:
    return space, seed, saved["objective"], saved["direction"]
  return (space, seed,
          *search.objective(args.config, args.metric, args.mode))


def _search_record(args, space, seed: int, metric: str, mode: str
                   ) -> dict[str, Any]:
  return {"method": args.search, "config": args.config, "seed": seed,
          "trials": args.trials, "space": search.space_json(space),
          "objective": metric, "direction": mode}


def run_tpe_search(args, root: pathlib.Path, extra: Sequence[str]
                   ) -> list[TrialResult]:
  """--search=tpe: runs the study to --trials trials (unless
  --report_only), writes the report; a result per distinct trial."""
  for flag, given in ((f"--trial={args.trial}", args.trial is not None),
                      ("--pending", args.pending),
                      (f"--parallel={args.parallel}", args.parallel > 1)):
    if given:
      raise UserError(f"--search=tpe runs one trial at a time (each is "
                      f"chosen from the results before it): drop {flag}, "
                      "or use --search=random.")
  space, seed, metric, mode = _search_setup(args, root)
  if not args.report_only:
    if args.trials is None:
      raise UserError("--search=tpe needs --trials=N, the number of trials "
                      "the study should hold in all.")
    search.write_search_json(
        root, _search_record(args, space, seed, metric, mode),
        same=("method", "seed", "space", "objective", "direction"))

    def evaluate(overrides: Overrides) -> float | None:
      result = run_trial(args.config, root, overrides, extra)
      if result.status != "done":
        return None
      return objective_value(root / result.name, metric, mode)

    search.run_tpe(root, space, args.trials, seed, mode, evaluate)
  study = search.study_trials(root, space)
  results: dict[str, TrialResult] = {}
  for overrides, state in study:
    name = trial_name(overrides)
    if state == "COMPLETE":
      results[name] = TrialResult(name, "done", None)
    elif name not in results:  # a repeat of a completed trial stays done
      status = trial_status(root / name)
      results[name] = TrialResult(
          name, f"{status}, no finite {metric}" if status == "done"
          else status, None)
  trials = [overrides for overrides, _ in study]
  print(f"[sweep] report: {report(root, trials, metric, mode, space)}")
  return list(results.values())


if __name__ == "__main__":
  sys.exit(main())
