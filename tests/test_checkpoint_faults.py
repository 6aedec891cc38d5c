"""Damaged, mismatched and unwritable checkpoints (rnnlab/checkpoint.py).

One tiny run (checkpoints at steps 10 and 20) is trained once; each test
damages its own copy.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import textwrap
import threading

import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest

from rnnlab import checkpoint
from rnnlab import cli
from rnnlab import tasks
from rnnlab import train
from rnnlab.errors import CheckpointError, CheckpointReadError, UserError
from tests.helpers import ROOT, tiny_lm_config

# Checkpoints (and evaluations) at steps 10 and 20, both kept.
OVERRIDES = dict(train__steps=20, train__eval_every=10,
                 train__checkpoint_every=10, train__max_to_keep=2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corpus_path):
  del corpus_path  # only for its clear failure when the corpus is missing
  workdir = tmp_path_factory.mktemp("faults") / "run"
  train.train_and_evaluate(tiny_lm_config(**OVERRIDES), workdir)
  return workdir


@pytest.fixture
def run(trained, tmp_path) -> pathlib.Path:
  return pathlib.Path(shutil.copytree(trained, tmp_path / "run"))


def _hashes(directory: pathlib.Path) -> dict[str, str]:
  return {p.relative_to(directory).as_posix():
          hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(directory.rglob("*")) if p.is_file()}


def _array_file(step_dir: pathlib.Path) -> pathlib.Path:
  """The largest array data file of the step's params."""
  files = (step_dir / "params").rglob("ocdbt.process_0/d/*")
  return max(files, key=lambda p: p.stat().st_size)


def _templates(config):
  task = tasks.create_task(config)
  state, _ = train.create_train_state(task.model, task.init_inputs(), config,
                                      task.steps_per_epoch())
  return state.params, state.opt_state


def _damaged_warnings(caplog):
  return [r.getMessage() for r in caplog.records
          if r.levelno == logging.WARNING and "damaged" in r.getMessage()]


def test_manifest_is_committed_with_the_step(tmp_path):
  ckpt = checkpoint.Checkpointer(tmp_path / "ckpt")
  ckpt.save(3, {"w": jnp.arange(6.0)}, {"count": jnp.zeros((), jnp.int32)},
            {"step": 3})
  # Orbax's own wait, not ours: the manifest must land with the rename
  # (written before the commit), not in a later safety-net step.
  ckpt.manager.wait_until_finished()
  step_dir = tmp_path / "ckpt" / "3"
  manifest = (step_dir / checkpoint.MANIFEST).read_text()
  assert '"params/' in manifest and '"opt_state/' in manifest
  assert checkpoint.verify_manifest(step_dir) == []
  ckpt.close()


def test_truncated_newest_falls_back_and_run_resumes(run, caplog):
  good = _hashes(run / "checkpoints" / "10")
  victim = _array_file(run / "checkpoints" / "20")
  rel = victim.relative_to(run / "checkpoints" / "20")
  truncated = victim.stat().st_size // 2
  victim.write_bytes(victim.read_bytes()[:truncated])

  caplog.set_level(logging.WARNING)
  result = train.train_and_evaluate(tiny_lm_config(**OVERRIDES), run)

  assert result["step"] == 20
  assert any("truncated" in m for m in _damaged_warnings(caplog))
  # Set aside (still truncated) rather than deleted, and step 20 saved anew.
  [aside] = (run / "checkpoints" / checkpoint.CORRUPT_DIR).glob("20-*")
  assert (aside / rel).stat().st_size == truncated
  assert checkpoint.verify_manifest(aside)  # the manifest still flags it
  assert checkpoint.verify_manifest(run / "checkpoints" / "20") == []
  assert _hashes(run / "checkpoints" / "10") == good


def test_flipped_bit_in_array_is_caught_by_the_manifest(run, caplog):
  ckpt_dir = run / "checkpoints"
  good = _hashes(ckpt_dir / "10")
  victim = _array_file(ckpt_dir / "20")
  data = bytearray(victim.read_bytes())
  data[len(data) // 2] ^= 0x01
  victim.write_bytes(bytes(data))
  params, opt_state = _templates(tiny_lm_config(**OVERRIDES))
  caplog.set_level(logging.WARNING)

  # Readers (sampling, evaluation) skip it without moving anything.
  step, _ = checkpoint.Checkpointer(ckpt_dir, read_only=True).restore_params(
      params)
  assert step == 10 and (ckpt_dir / "20").is_dir()
  assert not (ckpt_dir / checkpoint.CORRUPT_DIR).exists()
  with pytest.raises(CheckpointError, match="sha256 mismatch"):
    checkpoint.Checkpointer(ckpt_dir, read_only=True).restore_params(params,
                                                                     20)
  # Training sets it aside so that step 20 can be saved again.
  ckpt = checkpoint.Checkpointer(ckpt_dir, max_to_keep=2)
  step, *_ = ckpt.restore_latest(params, opt_state)
  ckpt.close()
  assert step == 10 and not (ckpt_dir / "20").exists()
  assert any("sha256 mismatch" in m for m in _damaged_warnings(caplog))
  assert len(list((ckpt_dir / checkpoint.CORRUPT_DIR).glob("20-*"))) == 1
  assert _hashes(ckpt_dir / "10") == good


def test_step_without_manifest_is_restored_unverified(run, caplog):
  ckpt_dir = run / "checkpoints"
  (ckpt_dir / "20" / checkpoint.MANIFEST).unlink()  # killed before writing
  params, opt_state = _templates(tiny_lm_config(**OVERRIDES))
  caplog.set_level(logging.WARNING)
  step, _, _, meta, _ = checkpoint.Checkpointer(
      ckpt_dir, read_only=True).restore_latest(params, opt_state)
  assert step == 20 and meta["step"] == 20
  assert any("unverified" in r.getMessage() for r in caplog.records)


def test_changed_shapes_stop_with_the_paths_and_shapes(run):
  # Without its config.json (lost, or a run of an older rnnlab) the resume
  # check cannot compare configs; the checkpoint's shapes still refuse it.
  (run / "config.json").unlink()
  before = _hashes(run / "checkpoints")
  with pytest.raises(CheckpointError) as info:
    train.train_and_evaluate(
        tiny_lm_config(**OVERRIDES, model__hidden_size=48), run)
  message = str(info.value)
  assert str(run / "checkpoints" / "20") in message
  # GRU input kernel: saved (16, 3 * 32) vs (16, 3 * 48) for this config.
  assert "params/rnn/layers_0/" in message
  assert "saved shape (16, 96), this config (16, 144)" in message
  # A mismatch is not damage: nothing moved, nothing overwritten.
  assert _hashes(run / "checkpoints") == before


def test_every_checkpoint_damaged_is_an_error_not_a_fresh_start(run):
  for step in ("10", "20"):
    victim = _array_file(run / "checkpoints" / step)
    victim.write_bytes(victim.read_bytes()[:10])
  before = _hashes(run / "checkpoints")
  with pytest.raises(CheckpointError, match="Every checkpoint") as info:
    train.train_and_evaluate(tiny_lm_config(**OVERRIDES), run)
  assert "step 10:" in str(info.value) and "step 20:" in str(info.value)
  # Left in place (a rerun fails the same way), no fresh checkpoints.
  assert _hashes(run / "checkpoints") == before


def test_full_disk_at_save_names_directory_and_keeps_previous(run,
                                                              monkeypatch):
  def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

  # Every save writes its meta item through this handler.
  monkeypatch.setattr(ocp.handlers.JsonCheckpointHandler, "_save_fn", full)
  before = _hashes(run)
  with pytest.raises(CheckpointError) as info:
    train.train_and_evaluate(
        tiny_lm_config(**{**OVERRIDES, "train__steps": 30}), run)
  message = str(info.value)
  assert "step 30" in message and "the disk is full" in message
  # Latest or best, whichever failed first: named, with its intact step.
  named = next(d for d in ("checkpoints", "best")
               if f"{run / d} failed" in message)
  assert f"previous checkpoint {run / named}/" in message
  assert "is intact" in message
  for d in ("checkpoints", "best"):
    assert not (run / d / "30").exists()
    kept = {k: v for k, v in before.items() if k.startswith(f"{d}/")}
    assert kept and all(_hashes(run)[k] == v for k, v in kept.items())


def test_unwritable_workdir_fails_at_start(tmp_path, monkeypatch):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  # Root ignores permissions, so a path under a regular file stands in.
  with pytest.raises(UserError, match="Cannot write to workdir .*a_file"):
    train.train_and_evaluate(tiny_lm_config(**OVERRIDES), blocker / "run")

  def full(self, *args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(pathlib.Path, "write_text", full)
  with pytest.raises(UserError, match="No space left on device"):
    train.train_and_evaluate(tiny_lm_config(**OVERRIDES), tmp_path / "run")


# Read errors are not damage: retried, then a clear stop that keeps
# everything (rnnlab/checkpoint.py's docstring).

READ_SITES = ("manifest", "sha256", "metadata", "restore")


@pytest.fixture
def fast_retries(monkeypatch):
  monkeypatch.setattr(checkpoint, "READ_RETRY_DELAYS", (0.01, 0.01))


class _FailingReads:
  """Makes one of the reads a restore of step 20 does fail with an OS error,
  shaped as it would reach rnnlab: the manifest, a file it hashes (plain
  OSError), Orbax's metadata (an OSError chained in Orbax's error), Orbax's
  restore (tensorstore's "[OS error: ...]"). The first `times` such reads
  fail (None: every one); `path` is the file whose read fails."""

  def __init__(self, monkeypatch, where: str, ckpt_dir: pathlib.Path,
               times: int | None):
    self.calls, self.times = 0, times
    step_dir = ckpt_dir / "20"
    if where in ("manifest", "sha256"):
      self.path = (step_dir / checkpoint.MANIFEST if where == "manifest"
                   else _array_file(step_dir))
      real = os.path.realpath(self.path)

      def opener(original):
        def fake(file, *args, **kwargs):
          if (not isinstance(file, int) and
              os.path.realpath(file) == real and self._fail()):
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(self.path))
          return original(file, *args, **kwargs)
        return fake

      # Whichever way the code opens it (os.open, or Path.open -> io.open).
      monkeypatch.setattr(os, "open", opener(os.open))
      monkeypatch.setattr(io, "open", opener(io.open))
    elif where == "metadata":
      self.path = step_dir / "params" / "_METADATA"
      original = ocp.StandardCheckpointHandler.metadata

      def metadata(handler, directory):
        if pathlib.Path(directory).parent == step_dir and self._fail():
          try:
            raise OSError(errno.ESTALE, os.strerror(errno.ESTALE),
                          str(self.path))
          except OSError as e:
            raise ValueError(f"Failed to read metadata of {directory}") from e
        return original(handler, directory)

      monkeypatch.setattr(ocp.StandardCheckpointHandler, "metadata",
                          metadata)
    else:
      self.path = _array_file(step_dir)
      original = ocp.CheckpointManager.restore

      def restore(manager, step, *args, **kwargs):
        if step == 20 and self._fail():
          raise ValueError(
              'UNKNOWN: Error reading "params" in OCDBT database: Error '
              f'reading local file "{self.path}" [OS error: '
              f"{os.strerror(errno.EIO)}]")
        return original(manager, step, *args, **kwargs)

      monkeypatch.setattr(ocp.CheckpointManager, "restore", restore)

  def _fail(self) -> bool:
    self.calls += 1
    return self.times is None or self.calls <= self.times


@pytest.mark.parametrize("where", READ_SITES)
def test_transient_read_error_is_retried_not_damage(run, where, monkeypatch,
                                                    fast_retries, caplog):
  ckpt_dir = run / "checkpoints"
  before = _hashes(ckpt_dir)
  params, opt_state = _templates(tiny_lm_config(**OVERRIDES))
  failing = _FailingReads(monkeypatch, where, ckpt_dir, times=1)
  caplog.set_level(logging.WARNING)
  ckpt = checkpoint.Checkpointer(ckpt_dir, max_to_keep=2)
  step, *_ = ckpt.restore_latest(params, opt_state)
  ckpt.close()
  monkeypatch.undo()
  assert step == 20
  assert failing.calls >= 2  # it failed, then was read again
  assert any("retrying" in r.getMessage() for r in caplog.records)
  assert not _damaged_warnings(caplog)
  assert not (ckpt_dir / checkpoint.CORRUPT_DIR).exists()
  assert _hashes(ckpt_dir) == before


@pytest.mark.parametrize("where", READ_SITES)
def test_persistent_read_error_stops_and_keeps_everything(run, where,
                                                          monkeypatch,
                                                          fast_retries):
  kept = ("checkpoints", "best", "metrics.jsonl")
  before = {name: _hashes(run / name) if (run / name).is_dir() else
            (run / name).read_bytes() for name in kept}
  assert before["best"] and before["metrics.jsonl"]
  failing = _FailingReads(monkeypatch, where, run / "checkpoints", times=None)
  with pytest.raises(CheckpointReadError) as info:
    train.train_and_evaluate(tiny_lm_config(**OVERRIDES), run)
  monkeypatch.undo()
  message = str(info.value)
  assert f"Cannot read checkpoint {failing.path}: " in message
  assert "\n" not in message and "nothing was moved or deleted" in message
  assert failing.calls == len(checkpoint.READ_RETRY_DELAYS) + 1
  assert not (run / "checkpoints" / checkpoint.CORRUPT_DIR).exists()
  assert before == {name: _hashes(run / name) if (run / name).is_dir() else
                    (run / name).read_bytes() for name in kept}
  # Once the file system recovers, the newest step restores.
  step, _ = checkpoint.Checkpointer(
      run / "checkpoints", read_only=True).restore_params(
          _templates(tiny_lm_config(**OVERRIDES))[0])
  assert step == 20


def test_read_error_exits_75_with_one_line(capsys):
  message = ("Cannot read checkpoint /runs/a/checkpoints/20/params/_METADATA"
             ": [Errno 116] Stale file handle (3 attempts).")

  def main(argv):
    del argv
    raise CheckpointReadError(message)

  with pytest.raises(SystemExit) as info:
    cli.friendly_errors(main)(["rnnlab"])
  assert info.value.code == 75 == cli.READ_ERROR_EXIT_CODE
  assert capsys.readouterr().err == f"read error: {message}\n"


CLI_SCRIPT = textwrap.dedent("""
    import errno, os, sys
    import orbax.checkpoint as ocp
    from rnnlab import checkpoint, main
    checkpoint.READ_RETRY_DELAYS = (0.01, 0.01)

    def metadata(handler, directory):  # a file system that keeps failing
      raise OSError(errno.EIO, os.strerror(errno.EIO), str(directory))

    ocp.StandardCheckpointHandler.metadata = metadata
    sys.argv = ["rnnlab.main", "--mode=eval", "--workdir=" + sys.argv[1],
                "--verbosity=-2"]  # errors only: stderr is the error line
    main.run()
    """)


def test_cli_exits_75_on_a_persistent_read_error(run):
  before = _hashes(run)
  proc = subprocess.run([sys.executable, "-c", CLI_SCRIPT, str(run)],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 75, proc.stderr[-3000:]
  [line] = proc.stderr.splitlines()
  assert line.startswith(f"read error: Cannot read checkpoint "
                         f"{run}/checkpoints/20/params: [Errno 5] ")
  assert _hashes(run) == before


# Manifests name regular files inside their own step directory.


@pytest.fixture
def small(tmp_path) -> pathlib.Path:
  """Checkpoints of a 6-element array at steps 1 and 2 (quick to make)."""
  directory = tmp_path / "ckpt"
  ckpt = checkpoint.Checkpointer(directory)
  for step in (1, 2):
    ckpt.save(step, {"w": jnp.arange(6.0) + step},
              {"count": jnp.zeros((), jnp.int32)}, {"step": step})
  ckpt.close()
  return directory


def _newest_small(directory: pathlib.Path) -> int:
  return checkpoint.Checkpointer(directory, read_only=True).restore_params(
      {"w": jnp.zeros(6)})[0]


def _add_entries(step_dir: pathlib.Path, entries: dict):
  path = step_dir / checkpoint.MANIFEST
  manifest = json.loads(path.read_text())
  manifest["files"].update(entries)
  path.write_text(json.dumps(manifest))


def _release(fifo: pathlib.Path):
  """Lets a reader blocked opening `fifo` go on (sees end of file)."""
  try:
    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
  except OSError:  # no reader waiting
    pass


def test_manifest_naming_a_fifo_is_damage_and_does_not_hang(small):
  fifos = [small / "fifo", small / "2" / "params" / "pipe"]
  for fifo in fifos:
    os.mkfifo(fifo)
  empty = {"sha256": hashlib.sha256(b"").hexdigest(), "size": 0}
  _add_entries(small / "2", {"../fifo": empty, "params/pipe": empty})
  result = {}

  def check():
    try:
      result["problems"] = checkpoint.verify_manifest(small / "2")
      result["step"] = _newest_small(small)
    except Exception as e:  # pylint: disable=broad-except
      result["error"] = e

  thread = threading.Thread(target=check, daemon=True)
  thread.start()
  thread.join(timeout=30)
  if thread.is_alive():
    for _ in range(4):  # unblock the reader before failing
      for fifo in fifos:
        _release(fifo)
      thread.join(timeout=1)
    pytest.fail("restoring hung: it opened a FIFO named by the manifest")
  assert "error" not in result, result
  assert result["problems"] == [
      "'../fifo': a '..' component leads outside the step directory",
      "params/pipe: a FIFO, not a regular file"]
  assert result["step"] == 1  # step 2 skipped as damaged


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink",
                                  "directory"])
def test_manifest_entry_outside_or_not_a_file_is_damage(small, kind):
  step_dir = small / "2"
  outside = small.parent / "outside.bin"
  outside.write_bytes(b"not part of the checkpoint")
  # Entries that match what they name: only where they point is wrong.
  entry = {"sha256": hashlib.sha256(outside.read_bytes()).hexdigest(),
           "size": outside.stat().st_size}
  rel, reason = {
      "dotdot": ("../../outside.bin", "a '..' component leads outside"),
      "absolute": (str(outside), "an absolute path"),
      "symlink": ("params/link", "leads outside its step directory"),
      "directory": ("params", "a directory, not a regular file"),
  }[kind]
  if kind == "symlink":
    (step_dir / "params" / "link").symlink_to(outside)
  if kind == "directory":
    entry["size"] = (step_dir / "params").stat().st_size
  _add_entries(step_dir, {rel: entry})
  [problem] = checkpoint.verify_manifest(step_dir)
  assert reason in problem and rel in problem
  assert _newest_small(small) == 1


@pytest.mark.parametrize("shape", ["list", "files_list", "no_files",
                                   "entry_string", "no_size", "sha256_int",
                                   "size_string"])
def test_malformed_manifest_is_damage_with_a_reason(small, shape):
  step_dir = small / "2"
  path = step_dir / checkpoint.MANIFEST
  rel = "params/_METADATA"  # a real file, so only the shape is wrong
  entry = json.loads(path.read_text())["files"][rel]
  manifest, reason = {
      "list": ([entry], "expected a JSON object, got list"),
      "files_list": ({"version": 1, "files": [rel]},
                     '"files" must be an object'),
      "no_files": ({"version": 1}, '"files" must be an object'),
      "entry_string": ({"version": 1, "files": {rel: entry["sha256"]}},
                       f"entry {rel!r} must be"),
      "no_size": ({"version": 1, "files": {rel: {"sha256": entry["sha256"]}}},
                  f"entry {rel!r} must be"),
      "sha256_int": ({"version": 1, "files": {
          rel: {"sha256": 5, "size": entry["size"]}}},
                     f"entry {rel!r} must be"),
      "size_string": ({"version": 1, "files": {
          rel: {"sha256": entry["sha256"], "size": str(entry["size"])}}},
                      f"entry {rel!r} must be"),
  }[shape]
  path.write_text(json.dumps(manifest))
  [problem] = checkpoint.verify_manifest(step_dir)
  assert problem.startswith(f"unreadable {checkpoint.MANIFEST}: ")
  assert reason in problem
  assert _newest_small(small) == 1


# Several processes restore the same step.

PROCESSES_SCRIPT = textwrap.dedent("""
    import json, pathlib, sys
    import jax.numpy as jnp
    from rnnlab import checkpoint, distributed
    directory, port, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
    distributed.init_distributed(f"127.0.0.1:{port}", 2, pid)
    verify = checkpoint.verify_manifest
    for sees in (0, 1):  # the one process that finds step 2 damaged
      def fake(step_dir, sees=sees):
        if pid == sees and pathlib.Path(step_dir).name == "2":
          return ["injected: damaged as only this process sees it"]
        return verify(step_dir)
      checkpoint.verify_manifest = fake
      try:
        step, params, *_ = checkpoint.Checkpointer(
            directory, read_only=True).restore_latest(
                {"w": jnp.zeros(6)}, {"count": jnp.zeros((), jnp.int32)})
        out = {"step": step, "w0": float(params["w"][0])}
      except Exception as e:  # reported to the test
        out = {"error": type(e).__name__, "message": str(e)}
      print("RESULT", json.dumps(out), flush=True)
    """)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_every_process_restores_the_step_process_0_picked(small):
  port = _free_port()
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  procs = [subprocess.Popen(
      [sys.executable, "-c", PROCESSES_SCRIPT, str(small), str(port),
       str(pid)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True) for pid in (0, 1)]
  results = []
  try:
    for p in procs:
      out, err = p.communicate(timeout=120)
      assert p.returncode == 0, err[-3000:]
      results.append([json.loads(line.split(" ", 1)[1])
                      for line in out.splitlines()
                      if line.startswith("RESULT ")])
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  # Process 0 finds step 2 damaged: both restore step 1.
  assert [r[0] for r in results] == [{"step": 1, "w0": 1.0}] * 2
  # Only process 1 does: both stop rather than restore different steps.
  for r in results:
    assert r[1]["error"] == "CheckpointError", r[1]
    assert "process(es) [1] cannot use it" in r[1]["message"]
  assert "injected" in results[1][1]["message"]
