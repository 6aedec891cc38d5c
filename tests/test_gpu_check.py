"""Accelerator installs: the pyproject extras, the start-up warning for
jax#40101 (rnnlab/jax_guard.py) and `python -m rnnlab.gpu_check` without a
GPU."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

import jax
import pytest

from rnnlab import gpu_check
from rnnlab import jax_guard
from tests.helpers import ROOT


def run_python(*args, env=None):
  return subprocess.run([sys.executable, *args], cwd=ROOT,
                        env={**os.environ, **(env or {})},
                        capture_output=True, text=True, timeout=120)


# --- pyproject ------------------------------------------------------------------

def test_accelerator_extras_name_jax_extras_and_the_cpu_pin_stays():
  project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
  extras = project["optional-dependencies"]
  for name in ("cuda12", "cuda13", "tpu"):
    assert extras[name] == [f"jax[{name}]"]
  # The base leaves JAX open above (an extra cannot loosen a base pin) ...
  jax_deps = [d for d in project["dependencies"]
              if re.match(r"jax(lib)?\b", d)]
  assert jax_deps == ["jax>=0.10.2", "jaxlib>=0.10.2"]
  # ... and the CPU install's constraints stay below the regression.
  pins = dict(line.split("==") for line in
              (ROOT / "requirements/constraints.txt").read_text().splitlines()
              if line.startswith(("jax==", "jaxlib==")))
  assert set(pins) == {"jax", "jaxlib"}
  version = tuple(int(x) for x in pins["jaxlib"].split("."))
  assert not jax_guard.affected(version), pins


# --- the jax#40101 guard -----------------------------------------------------------

@pytest.fixture
def guard(monkeypatch):
  """jax_guard with the version and backend set by the test, and the
  warnings it logs."""
  logged = []
  monkeypatch.setattr(jax_guard, "_warned", False)
  monkeypatch.setattr(jax_guard.logging, "warning", logged.append)

  def configure(version, backend):
    monkeypatch.setattr(jax_guard, "jaxlib_version", lambda: version)
    monkeypatch.setattr(jax_guard, "default_backend", lambda: backend)
    return logged
  return configure


def test_guard_warns_once_for_an_affected_jaxlib_on_cpu(guard):
  logged = guard((0, 12, 1), "cpu")
  message = jax_guard.check()
  assert logged == [message]
  for part in ("jaxlib 0.12.1", "jax#40101", "256 bytes",
               "pip install -c requirements/constraints.txt -e .",
               "pip install 'jax<0.11' 'jaxlib<0.11'"):
    assert part in message
  assert jax_guard.check() is None and len(logged) == 1  # once per process


@pytest.mark.parametrize("version, backend", [
    ((0, 10, 2), "cpu"),   # the pinned CPU install
    ((0, 11, 0), "cpu"),   # before the regression
    ((0, 12, 1), "gpu"),   # XLA:CPU only
    ((0, 12, 1), "tpu"),
    ((0, 12, 1), None),    # an accelerator plugin, backend not started yet
])
def test_guard_is_silent_outside_the_affected_case(guard, version, backend):
  logged = guard(version, backend)
  assert jax_guard.check() is None and not logged


def test_affected_range_starts_at_0_11_1():
  assert not jax_guard.affected((0, 11, 0))
  assert jax_guard.affected((0, 11, 1)) and jax_guard.affected((1, 0, 0))


def test_backend_is_predicted_without_starting_one(monkeypatch):
  monkeypatch.setattr(jax_guard, "_backends_started", lambda: False)
  monkeypatch.setattr(jax_guard, "_configured_platforms", lambda: "")
  monkeypatch.setattr(jax_guard, "_accelerator_plugins", lambda: [])
  assert jax_guard.default_backend() == "cpu"
  monkeypatch.setattr(jax_guard, "_accelerator_plugins",
                      lambda: ["xla_cuda12"])
  assert jax_guard.default_backend() is None
  monkeypatch.setattr(jax_guard, "_configured_platforms", lambda: "cuda,cpu")
  assert jax_guard.default_backend() == "gpu"


def test_startup_leaves_the_backend_unstarted_for_jax_distributed():
  """cli.setup (every command's start) runs the guard before a multi-process
  run calls jax.distributed.initialize, which needs no backend started."""
  proc = run_python("-c", (
      "from jax._src import xla_bridge\n"
      "from rnnlab import cli, jax_guard\n"
      "cli.setup()\n"
      "print(jax_guard.default_backend(), "
      "xla_bridge.backends_are_initialized())\n"),
                    env={"JAX_PLATFORMS": ""})
  assert proc.returncode == 0, proc.stderr[-2000:]
  predicted, started = proc.stdout.split()
  assert started == "False"
  assert predicted in ("cpu", "None")  # None: an accelerator plugin installed


# --- python -m rnnlab.gpu_check -------------------------------------------------------

def test_without_a_gpu_the_check_exits_2_naming_the_backend():
  proc = run_python("-m", "rnnlab.gpu_check", env={"JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 2, proc.stderr[-2000:]
  error = proc.stderr.strip().splitlines()[-1]
  assert error.startswith("error: no GPU found: ")
  assert "default backend is cpu" in error and "--allow-cpu" in error
  assert not proc.stdout


def test_old_name_is_an_alias():
  from benchmarks import gpu_check as old  # pylint: disable=g-import-not-at-top
  assert old.main is gpu_check.main


def test_allow_cpu_runs_the_numeric_checks_and_reports_the_max_error(capsys):
  args = gpu_check.parse_args(["--allow-cpu", "--shape=tiny", "--cells=lstm"])
  assert gpu_check.check(args) == 0
  out = capsys.readouterr().out
  assert "| lstm | fused vs scan | reverse=True |" in out
  if jax.default_backend() == "cpu":
    assert "| lstm | cudnn | reverse=False | skipped: no GPU |" in out
    assert "throughput skipped on cpu" in out
  worst = float(re.search(r"# numerics: max error (\S+) \(tol", out).group(1))
  assert 0 <= worst <= args.tol
  assert "lstm: bf16 compute vs float32" in out


def test_unknown_cell_is_refused_naming_the_choices(capsys):
  assert gpu_check.check(gpu_check.parse_args(["--cells=lstm,elman"])) == 2
  assert "unknown ['elman']. Valid choices: rnn, lstm, gru" in (
      capsys.readouterr().err)


def test_throughput_without_torch_skips_its_column(monkeypatch, capsys):
  monkeypatch.setitem(sys.modules, "torch", None)  # import torch fails
  torch = gpu_check.import_torch()
  assert torch is None
  results = gpu_check.throughput(
      ["rnn"], gpu_check.SHAPES["tiny"], repeats=1, seconds=0.01,
      torch=torch, implementations={"rnn": ("scan",)}, dtypes=("float32",))
  out = capsys.readouterr().out
  assert "PyTorch not installed: its column is skipped" in out
  assert re.search(r"\| rnn \| scan/float32 \| [\d,]+ \| - \| - \|", out), out
  assert set(results["rnn"]) == {"scan/float32"}
