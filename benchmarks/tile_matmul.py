"""The native training kernel's recurrent matmul alone, per register tile.

  python -m benchmarks.tile_matmul                      # LSTM, every shape
  python -m benchmarks.tile_matmul --cells=gru --tiles=default,4x3,3x4

Times recurrence.cc's own Pack and MatMul (benchmarks/tile_matmul.cc
includes it) on the products each training step runs per time step: the
forward h_{t-1} [B, H] @ W_h [H, G*H] with h's rows T*H apart as the kernel
reads them, and the backward d_hp [B, G*H] @ W_h^T [G*H, H]. Each tile
setting is built once (-DRNNLAB_TILE_ROWS/VECS; "default" is the variant's
own), then the builds run in turn, --rounds times, so that a slow spell of
the machine hits them all. Prints the median GFLOP/s over rounds (each
round: the median of its samples), the spread, and the share of the
2048^3 jitted matmul's rate.
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import subprocess
import tempfile

from benchmarks import harness
from benchmarks import train_throughput
from rnnlab.native import build
from rnnlab.native import recurrence

SOURCE = pathlib.Path(__file__).with_name("tile_matmul.cc")


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--cells", default="lstm")
  p.add_argument("--shapes", default="ref,h512,h1024")
  p.add_argument("--tiles", default="default",
                 help="comma-separated: default or ROWSxVECS, e.g. 4x3")
  p.add_argument("--isa", default=None, help="variant (default: this CPU's)")
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--samples", type=int, default=10)
  return p.parse_args(argv)


def tile_flags(tile: str) -> tuple[str, ...]:
  if tile == "default":
    return ()
  try:
    rows, vecs = (int(x) for x in tile.split("x"))
  except ValueError:
    raise SystemExit(f"--tiles: {tile!r} is not 'default' or ROWSxVECS "
                     "(e.g. 6x2)") from None
  return (f"-DRNNLAB_TILE_ROWS={rows}", f"-DRNNLAB_TILE_VECS={vecs}")


def compile_tile(isa: str, tile: str, directory: pathlib.Path) -> pathlib.Path:
  """An executable of the harness with the kernel's flags for `isa`."""
  target = directory / f"tile_matmul_{isa}_{tile}"
  extra = recurrence.CXX_FLAGS + ("-I", str(recurrence.SOURCE.parent))
  cmd = build.compile_command(SOURCE, isa, target, cxx=True,
                              extra_flags=extra + tile_flags(tile))
  cmd = [c for c in cmd if c not in ("-shared", "-fPIC")]  # a program
  subprocess.run(cmd, check=True)
  return target


def products(cell: str,
             s: harness.Shape) -> list[tuple[str, int, int, int, int]]:
  """(name, M, K, N, lda) of the per-step recurrent products."""
  gh = harness.GATES[cell] * s.hidden
  return [("forward h @ W_h", s.batch, s.hidden, gh, s.seq_len * s.hidden),
          ("backward d_hp @ W_h^T", s.batch, gh, s.hidden, gh)]


def main(argv=None):
  args = parse_args(argv)
  isa = args.isa or build.default_isa()
  tiles = args.tiles.split(",")
  peak = train_throughput.matmul_peak_gflops()
  print(f"# {harness.machine()} | variant {isa}")
  print(f"# fp32 matmul peak (2048^3, jit): {peak:.0f} GFLOP/s")
  print("| cell | shape | product [M, K] x [K, N] | tile | GFLOP/s (median "
        "of rounds) | range | % of peak |")
  print("|---|---|---|---|---|---|---|")
  with tempfile.TemporaryDirectory() as tmp:
    exe = {t: compile_tile(isa, t, pathlib.Path(tmp)) for t in tiles}
    for cell in args.cells.split(","):
      for shape in args.shapes.split(","):
        s = harness.SHAPES[shape]
        for name, m, k, n, lda in products(cell, s):
          rounds = {t: [] for t in tiles}
          for _ in range(args.rounds):
            for t in tiles:
              out = subprocess.run(
                  [str(exe[t]), str(m), str(k), str(n), str(lda),
                   str(args.samples)],
                  check=True, capture_output=True, text=True).stdout
              rounds[t].append(statistics.median(
                  float(x) for x in out.split()))
          for t in tiles:
            med = statistics.median(rounds[t])
            print(f"| {cell} | {shape} | {name} [{m}, {k}] x [{k}, {n}] | "
                  f"{t} | {med:.0f} | {min(rounds[t]):.0f}-"
                  f"{max(rounds[t]):.0f} | {100 * med / peak:.0f}% |",
                  flush=True)


if __name__ == "__main__":
  main()
