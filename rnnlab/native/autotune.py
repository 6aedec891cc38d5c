"""What "auto" runs: the fastest candidate, timed once and cached.

A recurrent layer can run as "native" (this package's kernels), "fused"
or "scan" (XLA), and the sampler as "native" or "jax". Which is fastest
depends on the CPU (a kernel tuned for AVX-512 can be 6x slower on an AVX2
machine), the cores, the cell and the shapes, so "auto" measures: on first
use for a key, each candidate that can run is timed on the real work (a
training step, a sampling call), interleaved, and the median decides. The
winner is cached as JSON under `build.cache_dir()/choices`, keyed by the
caller's fields (cell, shapes, dtype, ...) plus the CPU signature, the
cores this process may use, the native variant and library, and the jax
version, so that later runs and other processes reuse it.

Candidates are listed simplest first. The fastest wins only if it beats
every simpler one by more than `MARGIN`: one noisy timing must not cache a
kernel that is not clearly faster. A close call is timed again before it
is decided.

RNNLAB_AUTOTUNE=0 replaces timing by the fixed rule (the tests use it, so
that their programs do not depend on timing noise).
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import pathlib
import statistics
import tempfile
import time
from typing import Any, Callable, Mapping, Sequence

from absl import logging
import jax

from rnnlab.native import build
from rnnlab.native import recurrence
from rnnlab.native import sampler

MARGIN = 0.05  # a less simple candidate must be this much faster
REPEATS = 7  # interleaved timed runs per candidate; the median counts
TARGET_SECONDS = 0.25  # length of one timed run
MAX_STEPS = 20


def timing_enabled() -> bool:
  """False under RNNLAB_AUTOTUNE=0: "auto" follows the fixed rule."""
  value = os.environ.get("RNNLAB_AUTOTUNE", "").strip().lower()
  return value not in ("0", "false", "no", "off")


@dataclasses.dataclass
class Choice:
  """What "auto" runs for one key, and why.

  source: "timed" (measured now), "cache" (measured before on this
  machine), "run" (the run's own earlier choice, for resuming), "rule"
  (RNNLAB_AUTOTUNE=0, or only one candidate), "config" (not "auto").
  seconds: median seconds per step (or call) of each candidate timed.
  """
  choice: str
  source: str
  seconds: dict[str, float] = dataclasses.field(default_factory=dict)
  key: str = ""

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def summary(self) -> str:
    timings = ", ".join(f"{name} {1e3 * s:.1f} ms"
                        for name, s in sorted(self.seconds.items(),
                                              key=lambda kv: kv[1]))
    return (f"{self.choice} ({self.source}"
            f"{': ' + timings if timings else ''})")


def environment() -> dict[str, Any]:
  """What a timing depends on besides the caller's fields."""
  reason = build.disabled()
  isa, library = "off", ""
  if not reason:
    try:
      isa = build.default_isa()
      # Both kernels (training loops, sampler): a change to either one's
      # source, flags or compiler makes every timing stale.
      library = ",".join(kernel.library_file(isa).name
                         for kernel in (recurrence, sampler))
    except (build.NativeUnavailable, ValueError, OSError):
      library = "unavailable"
  import jaxlib  # pylint: disable=g-import-not-at-top
  return {"cpu": build.cpu_signature(), "cores": build.cores(),
          "isa": isa, "library": library, "jax": jax.__version__,
          "jaxlib": jaxlib.__version__, "backend": jax.default_backend(),
          "devices": jax.device_count(),
          "xla_flags": os.environ.get("XLA_FLAGS", "")}


def cache_key(kind: str, fields: Mapping[str, Any]) -> str:
  blob = json.dumps({"kind": kind, "fields": fields, "env": environment()},
                    sort_keys=True, default=str)
  return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:20]}"


def choices_dir() -> pathlib.Path:
  return build.cache_dir() / "choices"


def cached(key: str) -> Choice | None:
  try:
    data = json.loads((choices_dir() / f"{key}.json").read_text())
    return Choice(choice=data["choice"], source="cache",
                  seconds=data.get("seconds", {}), key=key)
  except (OSError, ValueError, KeyError, TypeError):
    return None  # absent or unreadable: time again


def store(key: str, choice: Choice, kind: str,
          fields: Mapping[str, Any]) -> None:
  """Writes the choice atomically under a unique temporary name: several
  processes may time the same key at once; the last one stays."""
  directory = choices_dir()
  record = {"kind": kind, "fields": fields, "choice": choice.choice,
            "seconds": choice.seconds, "cpu": build.cpu_model(),
            "cores": build.cores(),
            "created": datetime.datetime.now().isoformat(timespec="seconds")}
  try:
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{key}.",
                               suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      json.dump(record, f, indent=2, sort_keys=True, default=str)
    os.replace(tmp, directory / f"{key}.json")
  except OSError as e:  # a read-only cache: time again next run
    logging.warning("Could not cache the auto choice in %s: %s", directory, e)


def list_choices() -> list[dict[str, Any]]:
  out = []
  for path in sorted(choices_dir().glob("*.json")):
    try:
      out.append({"file": path.name, **json.loads(path.read_text())})
    except (OSError, ValueError):
      out.append({"file": path.name, "error": "unreadable"})
  return out


def clear() -> int:
  """Deletes the cached choices; returns how many."""
  count = 0
  for path in choices_dir().glob("*.json"):
    path.unlink(missing_ok=True)
    count += 1
  return count


def pick(seconds: Mapping[str, float], simplest_first: Sequence[str]) -> str:
  """The first candidate (simplest first) within MARGIN of the fastest."""
  best = min(seconds.values())
  for name in simplest_first:
    if name in seconds and seconds[name] <= best * (1 + MARGIN):
      return name
  raise ValueError(f"no candidate timed among {list(simplest_first)}")


def close_calls(seconds: Mapping[str, float],
                simplest_first: Sequence[str]) -> list[str]:
  """The candidates whose timing could flip `pick`: the fastest and every
  simpler one within 2 x MARGIN of it (empty when the call is clear)."""
  best = min(seconds, key=seconds.get)
  close = [name for name in simplest_first if name in seconds and
           seconds[name] <= seconds[best] * (1 + 2 * MARGIN)]
  return close if len(close) > 1 else []


Runner = Callable[[int], None]  # runs n steps (calls) and waits for them


def measure(runners: Mapping[str, Runner], *,
            broadcast: Callable[[Any], Any] = lambda v: v,
            repeats: int = REPEATS,
            target_seconds: float = TARGET_SECONDS,
            steps: Mapping[str, int] | None = None
            ) -> tuple[dict[str, list[float]], dict[str, int]]:
  """Seconds per step of each runner in `repeats` interleaved runs, and
  the steps per run: (samples, steps).

  Without `steps`, each runner is warmed up (compiled) with one step and
  probed with one more to size its runs to about `target_seconds`. The
  runners then take turns, so that slow drifts of the machine hit all
  alike. `broadcast(v)` returns process 0's v: several processes then run
  the same number of steps (their steps are collective).
  """
  if steps is None:
    steps = {}
    for name, run in runners.items():
      run(1)
      start = time.perf_counter()
      run(1)
      per_step = time.perf_counter() - start
      steps[name] = int(broadcast(max(1, min(
          MAX_STEPS, round(target_seconds / max(per_step, 1e-6))))))
  samples = {name: [] for name in runners}
  for _ in range(repeats):
    for name, run in runners.items():
      start = time.perf_counter()
      run(steps[name])
      samples[name].append((time.perf_counter() - start) / steps[name])
  return samples, dict(steps)


def _medians(samples: Mapping[str, list[float]]) -> dict[str, float]:
  return {name: statistics.median(v) for name, v in samples.items()}


def timed_choice(runners: Mapping[str, Runner],
                 simplest_first: Sequence[str], *,
                 broadcast: Callable[[Any], Any] = lambda v: v
                 ) -> tuple[str, dict[str, float]]:
  """(pick, median seconds per step) from timing `runners`. A close call
  (`close_calls`) is timed again, those candidates only, and decided on
  all their runs: a 5% margin needs more than 7 runs of a noisy machine."""
  samples, steps = measure(runners, broadcast=broadcast)
  close = broadcast(close_calls(_medians(samples), simplest_first))
  if close:
    more, _ = measure({name: runners[name] for name in close},
                      broadcast=broadcast, steps=steps)
    for name in close:
      samples[name] += more[name]
  seconds = _medians(samples)
  return pick(seconds, simplest_first), seconds


def choose(kind: str, fields: Mapping[str, Any],
           make_runners: Callable[[], Mapping[str, Runner]],
           simplest_first: Sequence[str], *,
           broadcast: Callable[[Any], Any] = lambda v: v,
           leader: bool = True, use_cache: bool = True) -> Choice:
  """The cached choice for (kind, fields, this machine), else times the
  runners `make_runners()` builds (only then), caches and returns the
  winner. With one candidate nothing is timed.

  Several processes: all call this; the `leader` (process 0) reads and
  writes the cache and picks, `broadcast` gives its values to the others,
  and all run the timing together when it is needed.
  """
  if len(simplest_first) == 1:
    return Choice(simplest_first[0], "rule")
  key = cache_key(kind, fields)
  hit = cached(key) if leader and use_cache else None
  if hit is not None and hit.choice not in simplest_first:
    hit = None
  hit_json = broadcast(hit.to_json() if hit else None)
  if hit_json:
    return Choice(**hit_json)
  name, seconds = timed_choice(make_runners(), simplest_first,
                               broadcast=broadcast)
  choice = Choice(**broadcast(Choice(name, "timed", seconds,
                                     key).to_json()))
  if leader and use_cache:
    store(key, choice, kind, fields)
  return choice
