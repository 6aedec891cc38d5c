"""Time to the first training step, cold and warm caches, of a config's
command as a user types it (default: README command 2).

  python -m benchmarks.first_step
  python -m benchmarks.first_step --config=configs/gru_shakespeare.py:runlocal --repeats=1

Each run is `python -m rnnlab.main --config=... --workdir=<fresh>
--config.train.steps=1` (one step: what comes after it does not count) in
its own process. "Cold": XDG_CACHE_HOME points at an empty directory, so
JAX's compilation cache, the native kernels' build and `auto`'s timings
(all under ~/.cache/rnnlab) start empty; the OS's file cache is not
dropped. "Warm": the same command again, with the caches the cold run
filled. The figure is the first step's metrics.jsonl record: its
wall_seconds (from the process's start, imports included, to the end of
the first step) and, of that, the first step's own compile and run.
The corpus must be found without the cache: set RNNLAB_DATA_DIR.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks import harness

ROOT = pathlib.Path(__file__).resolve().parents[1]


def first_step(config: str, cache: pathlib.Path, workdir: pathlib.Path
               ) -> dict[str, float]:
  env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
  env.pop("RNNLAB_JAX_CACHE", None)
  env.pop("RNNLAB_NATIVE_CACHE", None)
  t0 = time.perf_counter()
  proc = subprocess.run(
      [sys.executable, "-m", "rnnlab.main", f"--config={config}",
       f"--workdir={workdir}", "--config.train.steps=1",
       "--config.train.progress_bar=False"],
      cwd=ROOT, env=env, capture_output=True, text=True, check=False)
  wall = time.perf_counter() - t0
  if proc.returncode:
    raise SystemExit(f"{config} failed:\n{proc.stderr[-3000:]}")
  records = [json.loads(l) for l in (workdir / "metrics.jsonl").open()]
  first = next(r for r in records if r["split"] == "compile")
  choice = json.loads((workdir / "model.json").read_text())["implementation"]
  return {"to_first_step": first["wall_seconds"],
          "first_step": first["seconds"], "whole_command": wall,
          "implementation": choice.get("choice", "?"),
          "choice_source": choice.get("source", "?")}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", default="configs/gru_shakespeare.py")
  p.add_argument("--repeats", type=int, default=2,
                 help="cold-then-warm pairs, each with a new empty cache")
  args = p.parse_args(argv)
  if not os.environ.get("RNNLAB_DATA_DIR"):
    print("warning: RNNLAB_DATA_DIR is unset; a cold cache has no corpus, "
          "so the first run may try to download it.", file=sys.stderr)
  print(harness.machine())
  rows = {"cold": [], "warm": []}
  with tempfile.TemporaryDirectory(prefix="first_step_") as tmp:
    tmp = pathlib.Path(tmp)
    for r in range(args.repeats):
      cache = tmp / f"cache{r}"
      cache.mkdir()
      for kind in ("cold", "warm"):
        out = first_step(args.config, cache, tmp / f"run{r}_{kind}")
        rows[kind].append(out)
        print(f"{kind} #{r}: {out['to_first_step']:.1f} s to the first step "
              f"(its compile and run {out['first_step']:.1f} s; "
              f"implementation {out['implementation']} from "
              f"{out['choice_source']}); whole command "
              f"{out['whole_command']:.1f} s", flush=True)
  for kind, outs in rows.items():
    values = [o["to_first_step"] for o in outs]
    print(f"{kind}: median {statistics.median(values):.1f} s to the first "
          f"step over {len(values)} run(s) ({args.config})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
