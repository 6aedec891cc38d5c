"""Damaged, mismatched and unwritable checkpoints (rnnlab/checkpoint.py).

One tiny run (checkpoints at steps 10 and 20) is trained once; each test
damages its own copy.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import pathlib
import shutil

import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest

from rnnlab import checkpoint
from rnnlab import tasks
from rnnlab import train
from rnnlab.errors import CheckpointError, UserError
from tests.conftest import tiny_lm_config

OVERRIDES = dict(train__steps=20, train__eval_every=10,
                 train__checkpoint_every=10, train__max_to_keep=2)


def _config(**overrides):
  return tiny_lm_config(**{**OVERRIDES, **overrides})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corpus_path):
  del corpus_path  # only for its clear failure when the corpus is missing
  workdir = tmp_path_factory.mktemp("faults") / "run"
  train.train_and_evaluate(_config(), workdir)
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
  result = train.train_and_evaluate(_config(), run)

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
  params, opt_state = _templates(_config())
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
  params, opt_state = _templates(_config())
  caplog.set_level(logging.WARNING)
  step, _, _, meta, _ = checkpoint.Checkpointer(
      ckpt_dir, read_only=True).restore_latest(params, opt_state)
  assert step == 20 and meta["step"] == 20
  assert any("unverified" in r.getMessage() for r in caplog.records)


def test_changed_shapes_stop_with_the_paths_and_shapes(run):
  before = _hashes(run / "checkpoints")
  with pytest.raises(CheckpointError) as info:
    train.train_and_evaluate(_config(model__hidden_size=48), run)
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
    train.train_and_evaluate(_config(), run)
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
    train.train_and_evaluate(_config(train__steps=30), run)
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
    train.train_and_evaluate(_config(), blocker / "run")

  def full(self, *args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(pathlib.Path, "write_text", full)
  with pytest.raises(UserError, match="No space left on device"):
    train.train_and_evaluate(_config(), tmp_path / "run")
