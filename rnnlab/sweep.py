"""Config sweeps: expand, run (N at a time, done trials skipped), report.

A config defines its sweep beside `get_config`, in the big_vision style:

    def get_sweep(arg):
      return {"model.cell": ["rnn", "lstm", "gru"], "seed": [0, 1, 2]}  # grid
      # or a list of override dicts: [{"model.cell": "gru"}, ...]

  python -m rnnlab.sweep --config=configs/gru_shakespeare.py:runlocal --root=runs/sweep
  python -m rnnlab.sweep --config=... --root=runs/sweep --parallel=2
  python -m rnnlab.sweep --config=... --root=runs/sweep --report_only --metric=val/loss

Each trial runs `python -m rnnlab.main --config=<config> --workdir=<root>/<name>
--config.<key>=<value> ...` in its own process, so a crash stays in its
trial. A trial whose status.json says "done" is skipped on a rerun; an
interrupted one resumes from its checkpoint. Failed trials are listed at the
end (exit code 1), never hidden. The report (<root>/report.md and
<root>/curves.png) reads each trial's config.json, status.json and
metrics.jsonl.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib.util
import itertools
import json
import math
import pathlib
import re
import subprocess
import sys
import time
from typing import Any, Sequence

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


def _flag_value(v) -> str:
  # ml_collections parses overrides as Python literals.
  return repr(tuple(v)) if isinstance(v, (tuple, list)) else str(v)


def trial_command(config_spec: str, workdir: pathlib.Path,
                  overrides: Overrides, extra: Sequence[str] = ()
                  ) -> list[str]:
  return [sys.executable, "-m", "rnnlab.main", f"--config={config_spec}",
          f"--workdir={workdir}", "--config.train.progress_bar=False",
          *(f"--config.{k}={_flag_value(v)}" for k, v in overrides.items()),
          *extra]


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


def run(config_spec: str, root: pathlib.Path, trials: list[Overrides],
        parallel: int = 1, extra: Sequence[str] = ()) -> list[TrialResult]:
  """Runs the trials not yet done, `parallel` at a time."""
  root.mkdir(parents=True, exist_ok=True)

  def one(overrides):
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

  with concurrent.futures.ThreadPoolExecutor(max(1, parallel)) as pool:
    return list(pool.map(one, trials))


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
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  split, _, key = metric.partition("/")
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for r in rows:
    points = [(x["step"], x[key]) for x in r["records"]
              if x["split"] == split and key in x]
    if points:
      ax.plot(*zip(*points), marker=".", label=r["name"])
  ax.set_xlabel("step")
  ax.set_ylabel(metric)
  ax.grid(alpha=0.3)
  if ax.lines:
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
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
  p.add_argument("--report_only", action="store_true")
  args, extra = p.parse_known_args(argv)
  bad = [a for a in extra if not a.startswith("--config.")]
  if bad:
    p.error(f"Unknown arguments {bad}; only --config.<key>=<value> "
            "overrides pass through to every trial.")
  try:
    trials = load_sweep(args.config)
    root = pathlib.Path(args.root)
    results = [] if args.report_only else run(args.config, root, trials,
                                              args.parallel, extra)
    print(f"[sweep] report: {report(root, trials, args.metric, args.mode)}")
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  failed = [r for r in results if r.status != "done"]
  for r in failed:
    print(f"[sweep] FAILED {r.name}: {r.status} (log: "
          f"{pathlib.Path(args.root) / r.name / 'sweep.log'})",
          file=sys.stderr)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
