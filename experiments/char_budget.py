"""The 20-minute character model's report (docs/char_budget.md): its search,
then the winner retrained with new seeds next to the default GRU.

  python -m experiments.char_budget --root=runs/char20 --seeds=1,2,3 \
      --doc=docs/char_budget.md
  python -m experiments.char_budget --root=/tmp/cb --seeds=1 \
      --arg=runlocal --doc=/tmp/cb/report.md
  python -m experiments.char_budget --screen_only --doc=docs/char_budget.md

The search's three stages (--screen_root and --refine_root, each a
`rnnlab.sweep --search` root; --screen_default, the default recipe's run at
the screen's step budget; --arch_root, the sweep of widths and depths at
the budget's time, and --arch_reference, the winner's run at its seed)
copy the sweep's ranked report and its plots next to the doc, between the
char-budget-screen, char-budget-refine and char-budget-arch markers;
--screen_only writes only those parts.

Trains configs/gru_shakespeare_20min.py (with --winner_arg, e.g. narrow,
if given) once per seed (<root>/seed<s>) and
configs/gru_shakespeare.py once (<root>/default), each a whole command in
its own process, as a user runs it (a finished run is not trained again,
so the command can be rerun at will). Then evaluates each run's final
checkpoint again with eval.num_streams=1 (one stream through the whole
validation text), and writes the table (validation nats/char as the
configs report it, 32 streams with state carried, and with one stream;
wall clock of the whole command) and a plot of validation loss against
wall-clock time between the doc's char-budget markers.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import time

from experiments import sentiment_study as study
from rnnlab import metrics as metrics_lib
from rnnlab import sweep

ROOT = pathlib.Path(__file__).resolve().parents[1]
WINNER = ROOT / "configs" / "gru_shakespeare_20min.py"
DEFAULT = ROOT / "configs" / "gru_shakespeare.py"
BEGIN, END = "<!-- char-budget:begin -->", "<!-- char-budget:end -->"
ONE_STREAM_FILE = "eval_one_stream.json"


def markers(stage: str) -> tuple[str, str]:
  return (f"<!-- char-budget-{stage}:begin -->",
          f"<!-- char-budget-{stage}:end -->")


def train(config: pathlib.Path, arg: str, workdir: pathlib.Path, seed: int
          ) -> float | None:
  """Runs the command unless the run is done; returns its wall clock."""
  if sweep.status_of(workdir) == "done":
    print(f"skip  {workdir}: done", flush=True)
    return None
  workdir.mkdir(parents=True, exist_ok=True)
  spec = f"{config}:{arg}" if arg else str(config)
  t0 = time.perf_counter()
  with (workdir / "command.log").open("a") as log:
    subprocess.run([sys.executable, "-m", "rnnlab.main", f"--config={spec}",
                    f"--workdir={workdir}", f"--config.seed={seed}",
                    "--config.train.progress_bar=False"], cwd=ROOT,
                   stdout=log, stderr=subprocess.STDOUT, check=True)
  seconds = time.perf_counter() - t0
  (workdir / "wall.json").write_text(json.dumps({"seconds": seconds}) + "\n")
  return seconds


def one_stream(workdir: pathlib.Path) -> float:
  """Validation loss of the final checkpoint with eval.num_streams=1."""
  path = workdir / ONE_STREAM_FILE
  if not path.exists():
    from rnnlab import rundir  # pylint: disable=g-import-not-at-top
    from rnnlab import train as trainer  # pylint: disable=g-import-not-at-top
    config = rundir.load_config(workdir)
    config.eval.num_streams = 1
    results = trainer.evaluate_checkpoint(config, workdir)
    path.write_text(json.dumps({"step": results["step"],
                                "loss": results["eval"]["val"]["loss"]}) + "\n")
  return json.loads(path.read_text())["loss"]


def summary(workdir: pathlib.Path) -> dict:
  val = [r for r in metrics_lib.read_metrics(workdir) if r["split"] == "val"]
  wall = workdir / "wall.json"
  return {"val": val[-1]["loss"], "step": val[-1]["step"],
          "one_stream": one_stream(workdir),
          "seconds": json.loads(wall.read_text())["seconds"]
                     if wall.exists() else None,
          "curve": [(r.get("wall_seconds"), r["loss"]) for r in val]}


def _minutes(seconds) -> str:
  return "n/a" if seconds is None else f"{seconds // 60:.0f} min {seconds % 60:.0f} s"


def plot(runs: dict[str, dict], path: pathlib.Path) -> pathlib.Path:
  fig, (ax,) = sweep.figure(1, (7, 4))
  for name, s in runs.items():
    points = [(t / 60, l) for t, l in s["curve"] if t is not None]
    if points:
      ax.plot(*zip(*points), marker="o", ms=3, label=name)
  ax.set_xlabel("wall clock of the whole command (minutes)")
  ax.set_ylabel("validation nats/char")
  ax.legend(fontsize=8)
  return sweep.save_figure(fig, path)


def stage_part(stage: str, root: pathlib.Path, default: pathlib.Path | None,
               doc: pathlib.Path, how: str,
               reference_name: str = "The default recipe "
               "(`configs/gru_shakespeare.py`'s settings)") -> str:
  """One search stage's ranked table (the sweep's report.md, best first)
  and plots, and the reference run's loss (`default`: the default recipe
  at the same budget) if run."""
  import shutil  # pylint: disable=g-import-not-at-top
  table = (root / "report.md").read_text().strip()
  plots = []
  for name, what in (("params.png", "objective against each searched value"),
                     ("curves.png", "validation curves of the trials")):
    if (root / name).exists():  # a grid sweep has no params.png
      shutil.copyfile(root / name,
                      doc.with_name(f"char_budget_{stage}_{name}"))
      plots += [f"![{what}](char_budget_{stage}_{name})", ""]
  cores = study.cores_note(json.loads(t.read_text()).get("cpus")
                           for t in root.glob("*/trial.json"))
  reference = ""
  if default is not None and default.exists():
    val = [r for r in metrics_lib.read_metrics(default)
           if r["split"] == "val"]
    best = min(val, key=lambda r: r["loss"])
    reference = (f" {reference_name} at the same budget: "
                 f"**{best['loss']:.4f}** (step {best['step']:,}).")
  begin, end = markers(stage)
  return "\n".join([
      begin,
      f"Measured {study.datetime.date.today()} on {study.cpu_model()}, "
      f"{how}{cores}.{reference} Trials ranked by their lowest validation loss:",
      "", table, "", *plots, end])


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--root", default="runs/char20")
  p.add_argument("--seeds", default="1,2,3")
  p.add_argument("--arg", default="", help="config arg of both, e.g. runlocal")
  p.add_argument("--winner_arg", default="",
                 help="config arg of the 20-minute config only, e.g. narrow "
                 "(stage 2's 2 x 256)")
  p.add_argument("--doc", default=str(ROOT / "docs" / "char_budget.md"))
  p.add_argument("--screen_root", default="runs/char20_screen")
  p.add_argument("--screen_default", default="runs/char20_screen_default")
  p.add_argument("--refine_root", default="runs/char20_refine")
  p.add_argument("--arch_root", default="runs/char20_arch")
  p.add_argument("--arch_reference", default="runs/char20_probe_ema_wd")
  p.add_argument("--screen_only", action="store_true")
  args = p.parse_args(argv)
  doc = pathlib.Path(args.doc)
  # Stages 2 and 3 ran two trials at a time, each pinned to its own core
  # (the sweep's --trial=K): a fixed step budget makes that change no result.
  pinned = "two trials at a time, each pinned to its own core"
  for stage, root, default, how, *name in (
      ("screen", args.screen_root, pathlib.Path(args.screen_default),
       "one trial at a time"),
      ("refine", args.refine_root, None, pinned),
      ("arch", args.arch_root, pathlib.Path(args.arch_reference), pinned,
       "Stage 2's winner (2 x 256, `:narrow`, seed 0)")):
    if (pathlib.Path(root) / "report.md").exists():
      text = stage_part(stage, pathlib.Path(root), default, doc, how, *name)
      study.write_doc(doc, text, *markers(stage))
      print(text)
  if args.screen_only:
    return 0
  root = pathlib.Path(args.root)
  seeds = [int(s) for s in args.seeds.split(",") if s]
  winner_arg = ",".join(a for a in (args.arg, args.winner_arg) if a)
  for s in seeds:
    train(WINNER, winner_arg, root / f"seed{s}", s)
  train(DEFAULT, args.arg, root / "default", 0)
  winners = {s: summary(root / f"seed{s}") for s in seeds}
  default = summary(root / "default")
  png = plot({**{f"{WINNER.stem}, seed {s}": w for s, w in winners.items()},
              f"{DEFAULT.stem} (default), seed 0": default},
             doc.with_name("char_budget_curves.png"))
  w = list(winners.values())
  walls = [x["seconds"] for x in w if x["seconds"] is not None]
  lines = [
      BEGIN,
      f"Measured {study.datetime.date.today()} on {study.cpu_model()}, 2 "
      "cores, one run at a time:", "", "```",
      study.rerun_command("experiments.char_budget", argv), "```", "",
      "| Config | Seeds | Steps | Validation (32 streams, state carried) | "
      "Validation (1 stream) | Wall clock, whole command |",
      "|---|---|---|---|---|---|",
      f"| `{WINNER.name}{':' + args.winner_arg if args.winner_arg else ''}` | "
      f"{', '.join(map(str, seeds))} | {w[0]['step']:,} | "
      f"**{study.mean_std([x['val'] for x in w], 1.0, 4)}** | "
      f"{study.mean_std([x['one_stream'] for x in w], 1.0, 4)} | "
      + (f"{_minutes(statistics.mean(walls))} (mean)" if walls else "n/a")
      + " |",
      f"| `{DEFAULT.name}` (default) | 0 | {default['step']:,} | "
      f"{default['val']:.4f} | {default['one_stream']:.4f} | "
      f"{_minutes(default['seconds'])} |", "",
      f"![validation against wall clock]({png.name})", "", END]
  text = "\n".join(lines)
  study.write_doc(doc, text, BEGIN, END)
  print(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
