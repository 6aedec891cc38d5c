"""Two local processes joined by jax.distributed (127.0.0.1 coordinator,
gloo collectives on CPU) train like one process at the same global batch,
and their checkpoint restores in a single process."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np

from rnnlab import checkpoint
from rnnlab import sampling
from tests.helpers import ROOT

SCRIPT = textwrap.dedent("""
    import os, sys
    from absl import logging
    from rnnlab import distributed, train
    logging.set_verbosity(logging.INFO)  # as rnnlab.main: the choice is logged
    from tests.helpers import tiny_lm_config, use_suite_settings
    use_suite_settings()  # the tests' compilation cache and XLA options
    workdir, port, implementation = sys.argv[1:4]
    pid, nproc, steps = map(int, sys.argv[4:])
    os.environ["RNNLAB_AUTOTUNE"] = "1"  # the suite runs the fixed rule
    if nproc > 1:
      distributed.init_distributed(f"127.0.0.1:{port}", nproc, pid)
    config = tiny_lm_config("gru", model__dropout_rate=0.2, train__steps=steps,
                            model__implementation=implementation,
                            train__log_every=1,
                            train__checkpoint_every=3, train__eval_every=2,
                            optim__schedule="reduce_on_plateau",
                            optim__plateau_patience=1,
                            optim__plateau_threshold=0.5)
    train.train_and_evaluate(config, workdir)
    """)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start(workdir, port, pid, nproc, steps=6, implementation="auto",
           cache=None):
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  if cache:  # a private native cache (timing choices) for this process
    env["RNNLAB_NATIVE_CACHE"] = str(cache)
  return subprocess.Popen(
      [sys.executable, "-c", SCRIPT, str(workdir), str(port), implementation,
       str(pid), str(nproc), str(steps)], cwd=ROOT, env=env,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _train_values(workdir, key="loss"):
  """{step: value} of the logged training intervals (a resumed run's first
  step compiles and is not logged)."""
  records = [json.loads(l) for l in (workdir / "metrics.jsonl").open()]
  return {r["step"]: r[key] for r in records if r["split"] == "train"}


def _assert_match(two, one, **tolerance):
  assert 6 in two and set(two) <= set(one)
  np.testing.assert_allclose([two[s] for s in two], [one[s] for s in two],
                             **tolerance)


def test_two_processes_match_one(tmp_path, corpus_path):
  del corpus_path
  two, one = tmp_path / "two", tmp_path / "one"
  caches = [tmp_path / f"cache{pid}" for pid in (0, 1)]
  # Two legs: 4 steps, then a resume (restored onto the mesh) to 6.
  # implementation="auto" with timing: process 0 decides for both.
  sources = []
  for steps in (4, 6):
    port = _free_port()
    procs = [_start(two, port, pid, 2, steps, cache=caches[pid])
             for pid in (0, 1)]
    chosen = []
    for p in procs:
      _, err = p.communicate(timeout=180)
      assert p.returncode == 0, err[-3000:]
      chosen.append(re.findall(r"implementation=auto runs (\S+) \((\w+)",
                               err))
    assert len(chosen[0]) == 1 and chosen[0] == chosen[1]  # followed
    record = json.loads((two / "model.json").read_text())
    assert record["processes"] == 2
    implementation = record["implementation"]["choice"]
    assert chosen[0][0][0] == implementation
    sources.append(record["implementation"]["source"])
  # Timed once (only process 0 caches it), then kept by the resumed run.
  assert sources == ["timed", "run"]
  assert len(list((caches[0] / "choices").glob("*.json"))) == 1
  assert not (caches[1] / "choices").exists()
  # The single process runs the same kernel, so that the runs compare.
  single = _start(one, 0, 0, 1, implementation=implementation)
  _, err = single.communicate(timeout=180)
  assert single.returncode == 0, err[-3000:]
  assert json.loads((two / "status.json").read_text())["status"] == "done"
  _assert_match(_train_values(two), _train_values(one), rtol=1e-5, atol=1e-5)
  # The plateau schedule lowered the rate on both processes alike, and the
  # resumed leg kept its state.
  rates = _train_values(two, "learning_rate")
  assert rates[6] < rates[2]
  _assert_match(rates, _train_values(one, "learning_rate"))
  # The two-process checkpoint restores in this (single) process.
  template = sampling.load_run_for_inference(one).params
  a = checkpoint.Checkpointer(two / "checkpoints", read_only=True)
  b = checkpoint.Checkpointer(one / "checkpoints", read_only=True)
  assert a.latest_step() == 6
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-5),
               a.restore_params(template)[1], b.restore_params(template)[1])
