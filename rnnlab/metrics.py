"""Run bookkeeping: metrics.jsonl, TensorBoard events, status, provenance.

A workdir holds:
  config.json      the config the run used
  provenance.json  git commit and dirty flag, package versions, devices
  status.json      {"status": "running" | "done" | "failed", "step": ...}
  metrics.jsonl    one JSON object per line: {"step", "split", metrics...}
  events.out.*     TensorBoard scalars (tensorboardX; no TensorFlow needed)
  curves.png       train/val loss against step
"""
from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import json
import math
import os
import pathlib
import platform
import secrets
import subprocess
import sys
from typing import Any, BinaryIO, Callable, Iterator, Mapping, TypeVar

import jax
from jax.experimental import multihost_utils

from rnnlab.errors import DataError, UserError

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint",
            "ml-collections", "numpy", "absl-py")


@contextlib.contextmanager
def atomic_file(path: pathlib.Path) -> Iterator[BinaryIO]:
  """A binary file that becomes `path` only if the block ends without error.

  It is written to a temporary file of its own in the same directory (a
  unique name: concurrent writers never share one; the same filesystem: the
  rename is atomic), flushed, fsynced, then renamed over `path`. A reader or
  a crash sees the old file or the new one, never part of one, and an error
  removes the temporary file.
  """
  path = pathlib.Path(path)
  tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
                       ".tmp")
  # os.open, not tempfile: the file gets the umask's mode, as `path` would.
  f = open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb")
  try:
    with f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise


def write_text(path: pathlib.Path, text: str):
  """Writes UTF-8 `text` atomically (`atomic_file`)."""
  with atomic_file(path) as f:
    f.write(text.encode("utf-8"))


def write_json(path: pathlib.Path, obj: Any):
  """Writes JSON atomically."""
  write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str)
             + "\n")


_syncs = 0  # numbers the barriers, so that processes out of step fail loudly


def sync(name: str):
  """Waits until every process reaches this barrier (nothing for one)."""
  if jax.process_count() > 1:
    global _syncs
    _syncs += 1
    multihost_utils.sync_global_devices(f"rnnlab_{name}_{_syncs}")


T = TypeVar("T")


def run_file(path: pathlib.Path, write: Callable[[pathlib.Path], None],
             read: Callable[[pathlib.Path], T]) -> T:
  """A file every process of a run needs (e.g. vocab.json): written once,
  read by all; returns `read(path)`.

  Process 0 calls `write(path)` if `path` does not exist (a resumed run
  keeps its file); all processes then wait at a barrier and read the same
  file. Every process must call this, in the same order.
  """
  path = pathlib.Path(path)
  error = None
  if jax.process_index() == 0 and not path.exists():
    try:
      write(path)
    except Exception as e:  # pylint: disable=broad-except
      error = e  # raised after the barrier: the others must not wait forever
  sync(f"run_file_{path.name}")
  if error is not None:
    raise error
  try:
    return read(path)
  except OSError as e:
    raise DataError(f"Cannot read {path}: {e}") from None
  # What parsing a damaged file raises (UserError, JSONDecodeError and
  # UnicodeDecodeError are ValueErrors; a wrong JSON shape, the others).
  except (ValueError, KeyError, TypeError, AttributeError) as e:
    raise UserError(
        f"{path} is damaged or not this run's file ({str(e).rstrip('.')}). "
        "It is written once, when a run starts, from the run's data: if the "
        "data are unchanged, delete it and rerun to resume; else use a new "
        "workdir.") from None


def read_json(path: pathlib.Path) -> Any:
  return json.loads(pathlib.Path(path).read_text(encoding="utf-8"))


def _git(*args: str) -> str | None:
  try:
    out = subprocess.run(
        ["git", *args], cwd=pathlib.Path(__file__).resolve().parent,
        capture_output=True, text=True, timeout=10, check=True)
    return out.stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None


def provenance() -> dict[str, Any]:
  """What produced this run: code version, packages and hardware."""
  versions = {}
  for name in PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  status = _git("status", "--porcelain", "--untracked-files=no")
  return {
      "time": datetime.datetime.now(datetime.timezone.utc).isoformat(),
      "git_commit": _git("rev-parse", "HEAD"),
      "git_dirty": None if status is None else bool(status),
      "command": sys.argv,
      "python": sys.version.split()[0],
      "platform": platform.platform(),
      "hostname": platform.node(),
      "packages": versions,
      "jax_backend": jax.default_backend(),
      "devices": [str(d) for d in jax.devices()],
      "process_count": jax.process_count(),
  }


def process_age() -> float | None:
  """Seconds since this process started (Linux: /proc), imports included;
  None where the kernel does not say."""
  try:
    # Field 22 of /proc/self/stat, in clock ticks after boot; the name
    # (field 2) may hold spaces, so count from its closing parenthesis.
    fields = pathlib.Path("/proc/self/stat").read_text().rpartition(")")[2]
    started = int(fields.split()[19]) / os.sysconf("SC_CLK_TCK")
    uptime = float(pathlib.Path("/proc/uptime").read_text().split()[0])
  except (OSError, ValueError, IndexError):
    return None
  return max(0.0, uptime - started)


def to_float(x) -> float:
  return float(jax.device_get(x))


class MetricWriter:
  """Appends scalars to metrics.jsonl and TensorBoard, from process 0 only."""

  def __init__(self, workdir: pathlib.Path, purge_step: int | None = None):
    """`purge_step`: a resumed run's first step; TensorBoard then hides the
    events an interrupted run wrote from that step on (it replays them)."""
    self.active = jax.process_index() == 0
    self.path = pathlib.Path(workdir) / "metrics.jsonl"
    self._tb = None
    if self.active:
      import tensorboardX  # pylint: disable=g-import-not-at-top
      self._tb = tensorboardX.SummaryWriter(str(workdir),
                                            purge_step=purge_step)

  def write(self, step: int, split: str, metrics: Mapping[str, Any]):
    if not self.active:
      return
    values = {k: to_float(v) for k, v in metrics.items()}
    record = {"step": int(step), "split": split, **values}
    # For curves against wall-clock time: seconds since this process began
    # (a resumed run's clock starts again). Not a TensorBoard scalar: its
    # events carry their own wall time.
    age = process_age()
    if age is not None:
      record["wall_seconds"] = round(age, 3)
    with self.path.open("a") as f:
      f.write(json.dumps(record) + "\n")
    for k, v in values.items():
      if math.isfinite(v):
        self._tb.add_scalar(f"{split}/{k}", v, step)

  def write_text(self, step: int, tag: str, text: str):
    if self.active:
      self._tb.add_text(tag, text, step)

  def flush(self):
    if self._tb is not None:
      self._tb.flush()

  def close(self):
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def read_metrics(workdir: pathlib.Path) -> list[dict[str, Any]]:
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line]


def plot_curves(workdir: pathlib.Path, key: str = "loss") -> pathlib.Path:
  """Plots `key` against step for every split in metrics.jsonl."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  records = read_metrics(workdir)
  fig, ax = plt.subplots(figsize=(6, 4))
  for split in sorted({r["split"] for r in records}):
    points = [(r["step"], r[key]) for r in records
              if r["split"] == split and key in r]
    if points:
      steps, values = zip(*points)
      ax.plot(steps, values, label=split, marker="." if len(points) < 30
              else None)
  ax.set_xlabel("step")
  ax.set_ylabel(f"{key} (nats/token)" if key == "loss" else key)
  ax.grid(alpha=0.3)
  ax.legend()
  out = pathlib.Path(workdir) / "curves.png"
  fig.tight_layout()
  fig.savefig(out, dpi=100)
  plt.close(fig)
  return out


def plot_attention(path: pathlib.Path, source: str, output: str, weights,
                   title: str = "") -> pathlib.Path:
  """Heatmap of attention weights [len(output) (+EOS), len(source)]:
  one row per output character, one column per input character."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  rows = list(output) + ["<eos>"]
  weights = weights[:len(rows)]
  fig, ax = plt.subplots(figsize=(0.3 * len(source) + 2,
                                  0.3 * len(rows) + 1.5))
  ax.imshow(weights, cmap="viridis", vmin=0, vmax=1, aspect="auto")
  ax.set_xticks(range(len(source)), list(source))
  ax.set_yticks(range(len(rows)), rows)
  ax.set_xlabel("input")
  ax.set_ylabel("output")
  ax.set_title(title or f"{source!r} -> {output!r}", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
