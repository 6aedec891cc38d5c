"""A run killed at any point resumes bitwise; SIGTERM saves and exits 143.

The config has every piece of state a resume must carry: the truncated-BPTT
carry (train.order="stateful"), dropout (per-step RNG), the plateau counters
and scale (reduce_on_plateau lowers the rate from step 16), the
early-stopping tracker (min_delta makes every other evaluation count as bad
until two in a row stop the run at step 36) and the best checkpoint
(eval_every does not divide checkpoint_every, so best saves run ahead of the
latest checkpoint).

Only the SIGKILL test starts a process (~15 s of imports and tracing); the
SIGTERM test signals this one, whose handler train_and_evaluate installs.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from rnnlab import checkpoint
from rnnlab import cli
from rnnlab import rundir
from rnnlab import sampling
from rnnlab import train
from rnnlab.errors import Preempted
from tests.helpers import ROOT, tiny_lm_config

OVERRIDES = dict(
    model__dropout_rate=0.2, train__order="stateful", train__steps=40,
    train__log_every=5, train__eval_every=4, train__checkpoint_every=10,
    train__max_to_keep=10, train__patience=2, train__min_delta=0.1,
    optim__schedule="reduce_on_plateau", optim__plateau_patience=1,
    optim__plateau_threshold=0.03, optim__plateau_factor=0.7,
    text__val_fraction=0.01)  # a small validation split: quick evaluations
STOP = 36  # where the uninterrupted run stops early

# The subprocess takes the suite's XLA options, so that it compiles the
# same programs as this process (bitwise comparisons need them).
CONFIG_FILE = f"""
from tests.helpers import tiny_lm_config, use_suite_settings

use_suite_settings()


def get_config():
  return tiny_lm_config("gru", **{OVERRIDES!r})
"""


@pytest.fixture(scope="module")
def straight(tmp_path_factory, corpus_path):
  """The uninterrupted run every interrupted one must match; also records
  whether train_and_evaluate put back the SIGTERM handler it replaced."""
  del corpus_path
  workdir = tmp_path_factory.mktemp("straight")
  before = signal.getsignal(signal.SIGTERM)
  results = train.train_and_evaluate(tiny_lm_config(**OVERRIDES), workdir)
  return workdir, results, signal.getsignal(signal.SIGTERM) is before


def _start(tmp_path: pathlib.Path, workdir: pathlib.Path,
           config_text: str = CONFIG_FILE):
  """`python -m rnnlab.main` on the config, as a scheduler would start it.
  Its log goes to a file: a full pipe nobody reads would stall it."""
  config_file = tmp_path / "config.py"
  config_file.write_text(config_text)
  env = {**os.environ, "RNNLAB_JAX_CACHE": os.environ.get(
      "RNNLAB_JAX_CACHE", str(ROOT / ".pytest_cache" / "jax"))}
  with (tmp_path / "log.txt").open("w") as log:
    return subprocess.Popen(
        [sys.executable, "-m", "rnnlab.main", f"--config={config_file}",
         f"--workdir={workdir}"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=log)


def _steps(directory: pathlib.Path) -> list[int]:
  """Finalized checkpoint steps: Orbax renames a step's temporary directory
  to the bare number only once it is complete."""
  if not directory.is_dir():
    return []
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def _wait_for(proc, ready, log: pathlib.Path, timeout=120.0):
  deadline = time.monotonic() + timeout
  while not ready():
    if proc.poll() is not None:
      pytest.fail("training ended before the signal could be sent: "
                  f"{log.read_text()[-3000:]}")
    if time.monotonic() > deadline:
      proc.kill()
      pytest.fail("no checkpoint appeared in time")
    time.sleep(0.01)


def _records(workdir: pathlib.Path, split: str):
  """(step, loss) of `split` in metrics.jsonl; json.loads fails on a line a
  kill cut off."""
  return [(r["step"], r["loss"]) for r in
          map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines())
          if r["split"] == split]


def _assert_same_run(workdir: pathlib.Path, straight_dir: pathlib.Path):
  """Latest and best checkpoints bitwise equal to the uninterrupted run's,
  and the same validation record, each step once."""
  template = sampling.load_run_for_inference(straight_dir).params
  for sub in (rundir.CHECKPOINT_DIR, rundir.BEST_DIR):
    a = checkpoint.Checkpointer(workdir / sub, read_only=True)
    b = checkpoint.Checkpointer(straight_dir / sub, read_only=True)
    assert a.latest_step() == b.latest_step(), sub
    leaves_a = jax.tree.leaves(a.restore_params(template)[1])
    leaves_b = jax.tree.leaves(b.restore_params(template)[1])
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b):
      assert np.array_equal(x, y), sub  # bitwise, not approximately
  assert _records(workdir, "val") == _records(straight_dir, "val")


def test_straight_run_restores_the_sigterm_handler_and_moves_counters(
    straight):
  workdir, results, handler_restored = straight
  assert handler_restored
  assert results["step"] == STOP and results["stopped_early"]
  # The plateau scale changed mid-run, so a resume that lost it would drift.
  rates = [r["learning_rate"] for r in map(
      json.loads, (workdir / "metrics.jsonl").read_text().splitlines())
           if r["split"] == "train"]
  assert rates[0] > rates[-1]
  assert len(set(rates)) > 2


def test_sigkill_mid_run_resumes_bitwise(straight, tmp_path):
  straight_dir, straight_results, _ = straight
  workdir = tmp_path / "killed"
  proc = _start(tmp_path, workdir)
  # Kill while a best checkpoint is ahead of the latest one: the resumed run
  # replays that stretch and must neither trip over nor keep the stale best.
  _wait_for(proc, lambda: _steps(workdir / rundir.CHECKPOINT_DIR) and max(
      _steps(workdir / rundir.BEST_DIR), default=0) > max(
          _steps(workdir / rundir.CHECKPOINT_DIR)), tmp_path / "log.txt")
  proc.send_signal(signal.SIGKILL)
  proc.wait(timeout=60)
  latest = max(_steps(workdir / rundir.CHECKPOINT_DIR))
  assert latest < STOP  # mid-run
  assert json.loads((workdir / "status.json").read_text())["status"] == (
      "running")
  results = train.train_and_evaluate(tiny_lm_config(**OVERRIDES), workdir)
  assert results["step"] == STOP
  assert results["best"] == straight_results["best"]
  _assert_same_run(workdir, straight_dir)


def test_resume_after_a_kill_past_the_best_and_mid_write(straight, tmp_path):
  """The state a SIGKILL at step 29 leaves, made without timing: checkpoint
  20 is the newest complete one, best/28 is ahead of it, and metrics.jsonl
  ends in a cut-off line. Resuming from 20 needs the tracker as saved there
  (best 20, and 24 a bad evaluation): a fresh one would count 24 as best and
  stop at 32."""
  straight_dir, straight_results, _ = straight
  workdir = tmp_path / "killed"
  shutil.copytree(straight_dir, workdir)
  for step in _steps(workdir / rundir.CHECKPOINT_DIR):
    if step > 20:
      shutil.rmtree(workdir / rundir.CHECKPOINT_DIR / str(step))
  assert _steps(workdir / rundir.BEST_DIR) == [28]
  with (workdir / "metrics.jsonl").open("a") as f:
    f.write('{"step": 29, "split": "tr')
  results = train.train_and_evaluate(tiny_lm_config(**OVERRIDES), workdir)
  assert results["step"] == STOP and results["stopped_early"]
  assert results["best"] == straight_results["best"]
  _assert_same_run(workdir, straight_dir)


def test_sigterm_saves_the_current_step_and_stops_preempted(straight,
                                                           tmp_path):
  straight_dir, _, _ = straight
  workdir = tmp_path / "preempted"
  sent, finished = threading.Event(), threading.Event()

  def preempt_after_first_checkpoint():
    while not _steps(workdir / rundir.CHECKPOINT_DIR):
      if finished.is_set():  # the run ended (or failed) first
        return
      time.sleep(0.01)
    # Without train_and_evaluate's handler SIGTERM would end pytest itself.
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
      os.kill(os.getpid(), signal.SIGTERM)
      sent.set()

  sender = threading.Thread(target=preempt_after_first_checkpoint)
  sender.start()
  try:
    with pytest.raises(Preempted) as stopped:
      train.train_and_evaluate(tiny_lm_config(**OVERRIDES), workdir)
  finally:
    finished.set()
    sender.join()
  assert sent.is_set()
  status = json.loads((workdir / "status.json").read_text())
  assert status == {"status": "preempted", "step": stopped.value.step}
  # The step it stopped at is saved, complete, and is what resumes.
  assert 10 <= status["step"] < STOP
  assert max(_steps(workdir / rundir.CHECKPOINT_DIR)) == status["step"]
  train.train_and_evaluate(tiny_lm_config(**OVERRIDES), workdir)
  assert json.loads((workdir / "status.json").read_text())["status"] == "done"
  _assert_same_run(workdir, straight_dir)


def test_sigterm_to_the_command_exits_143_preempted(tmp_path, corpus_path):
  """The real entry point under a scheduler: SIGTERM mid-run -> checkpoint
  at the current step, status "preempted", exit code 143."""
  del corpus_path
  workdir = tmp_path / "run"
  endless = {**OVERRIDES, "train__steps": 100_000, "train__patience": 0}
  proc = _start(tmp_path, workdir, CONFIG_FILE.replace(repr(OVERRIDES),
                                                       repr(endless)))
  _wait_for(proc, lambda: _steps(workdir / rundir.CHECKPOINT_DIR),
            tmp_path / "log.txt")
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=120) == 143, (tmp_path / "log.txt").read_text()
  status = json.loads((workdir / "status.json").read_text())
  assert status["status"] == "preempted"
  assert max(_steps(workdir / rundir.CHECKPOINT_DIR)) == status["step"] > 0
  assert "preempted:" in (tmp_path / "log.txt").read_text()


def test_a_resume_drops_best_checkpoints_of_the_lost_stretch(tmp_path):
  """A resume with a changed config (say a lower learning rate) takes another
  path from its checkpoint: a best saved after that step by the killed run is
  from the old path and must not stay as the best."""
  best = checkpoint.Checkpointer(tmp_path / rundir.BEST_DIR)
  for step in (12, 28):
    best.save(step, {"w": np.full(2, step)}, {"m": np.zeros(1)},
              {"step": step})
    best.wait()
  (tmp_path / "samples.txt").write_text(
      "=== step 10 ===\nTo be\n\n=== step 20 ===\nor not\n\n"
      "=== step 30 ===\nlost\n\n=== st")  # the last cut off by the kill
  rundir.forget_after(20, tmp_path, best)
  best.close()
  assert _steps(tmp_path / rundir.BEST_DIR) == [12]
  # The samples of the replayed steps go too; the run writes them again.
  assert (tmp_path / "samples.txt").read_text() == (
      "=== step 10 ===\nTo be\n\n=== step 20 ===\nor not\n\n")


def test_preempted_exits_143_for_requeueing_schedulers(capsys):
  def main(argv):
    raise Preempted(7)

  with pytest.raises(SystemExit) as exited:
    cli.friendly_errors(main)([])
  assert exited.value.code == cli.PREEMPTED_EXIT_CODE == 143
  assert "preempted: Preempted at step 7" in capsys.readouterr().err
