"""Orbax checkpoints: save, find the newest good one, restore (all or params).

Layout: <workdir>/checkpoints/<step>/{params,opt_state,meta[,train_carry]}
plus <step>/rnnlab_manifest.json. Orbax writes each step to a temporary
directory and renames it when complete, so a crash mid-save leaves the
previous step intact and the partial one is ignored.

Fault handling:

* Manifest. Every step directory gets `rnnlab_manifest.json`: relative path
  -> sha256 and size of each file (JSON, no pickle). It is written by process
  0 only (Orbax's primary host) from Orbax's `post_finalization_callback`,
  which runs after every process has written its shards and before Orbax
  renames the temporary directory to `<step>`. So the manifest lands in the
  same atomic rename as the data: a SIGKILL at any moment leaves either no
  `<step>` directory or one with its manifest. Orbax writes two bookkeeping
  files after that callback (`_CHECKPOINT_METADATA` gets a commit time,
  `commit_success.txt`), so those two are not in the manifest. As a safety
  net (e.g. a future Orbax that names temporary directories differently) a
  step this process saved without a manifest gets one on the next save,
  `wait()` or `close()`.
* A step without a manifest (saved by an older rnnlab, or by a run killed
  in the narrow safety-net window) is restored *unverified*: logged, its
  shapes checked against the model, then restored if Orbax can read it; if
  Orbax cannot, it counts as damaged like a manifest mismatch.
* Restore (`restore_latest`) tries steps newest first. A damaged step
  (manifest mismatch, unreadable metadata, Orbax read error) is skipped with
  a warning. Once an older step restores, the damaged newer ones are moved to
  `<checkpoints>/corrupt/<step>-<time>` (Orbax only lists directories named
  by a bare step number, so they are out of its way and the resumed run can
  save those steps again) and the run continues from the good step. Nothing
  is moved unless a good step was found: if every step is damaged,
  CheckpointError lists them all and the directory is left as it was, so a
  rerun fails the same way instead of starting from scratch.
* A step whose shapes or tree structure differ from the model is not
  damage: CheckpointError names the parameter paths, the saved shapes and
  this config's shapes, and nothing is moved.
* Saves: a failure of a (background) save, e.g. a full disk, raises
  CheckpointError naming the directory and the newest intact step. Orbax
  deletes old steps only after a new one is complete, so a failed save never
  costs the previous checkpoint.
"""
from __future__ import annotations

import datetime
import errno
import hashlib
import json
import os
import pathlib
from typing import Any

from absl import logging
import jax
import orbax.checkpoint as ocp

from rnnlab.errors import CheckpointError

MANIFEST = "rnnlab_manifest.json"
CORRUPT_DIR = "corrupt"  # damaged steps moved aside (not a step name)
# Written by Orbax after the manifest (see the module docstring).
_UNLISTED = {MANIFEST, "_CHECKPOINT_METADATA", "commit_success.txt"}
_MAX_LISTED = 8  # problems or paths shown in one message
_barriers = 0  # makes each set-aside barrier name unique, as Orbax requires


def _abstract(tree):
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _sha256(path: pathlib.Path) -> str:
  h = hashlib.sha256()
  with path.open("rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def _listed_files(step_dir: pathlib.Path) -> list[pathlib.Path]:
  return sorted(p for p in step_dir.rglob("*") if p.is_file() and not (
      p.parent == step_dir and (p.name in _UNLISTED or
                                p.name.startswith(MANIFEST))))


def write_manifest(step_dir: pathlib.Path) -> pathlib.Path:
  """Writes `step_dir`/rnnlab_manifest.json atomically (temp file + rename,
  so a reader never sees half a manifest)."""
  step_dir = pathlib.Path(step_dir)
  files = {p.relative_to(step_dir).as_posix(): {
      "sha256": _sha256(p), "size": p.stat().st_size}
           for p in _listed_files(step_dir)}
  path = step_dir / MANIFEST
  tmp = step_dir / f"{MANIFEST}.tmp"
  with tmp.open("w", encoding="utf-8") as f:
    json.dump({"version": 1, "files": files}, f, indent=0, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
  return path


def verify_manifest(step_dir: pathlib.Path) -> list[str] | None:
  """Problems found by checking `step_dir` against its manifest ([] when it
  matches); None when the step has no manifest (unverified)."""
  step_dir = pathlib.Path(step_dir)
  path = step_dir / MANIFEST
  if not path.exists():
    return None
  try:
    files = json.loads(path.read_text(encoding="utf-8"))["files"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    return [f"unreadable {MANIFEST}: {e}"]
  problems = []
  for rel, want in sorted(files.items()):
    p = step_dir / rel
    try:
      size = p.stat().st_size
      if size != want["size"]:
        problems.append(f"{rel}: {size} bytes, {want['size']} when saved"
                        + (" (truncated)" if size < want["size"] else ""))
      elif _sha256(p) != want["sha256"]:
        problems.append(f"{rel}: contents changed (sha256 mismatch)")
    except FileNotFoundError:
      problems.append(f"{rel}: missing")
    except OSError as e:
      problems.append(f"{rel}: unreadable ({e})")
  return problems


def _key_name(key) -> str:
  for attr in ("key", "idx", "name"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def _shapes(tree) -> dict[str, tuple[int, ...] | None]:
  return {"/".join(_key_name(k) for k in path): (
      tuple(leaf.shape) if hasattr(leaf, "shape") else None)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _shape_mismatches(item: str, saved, expected) -> list[str]:
  """Lines naming each path whose saved shape differs from `expected`'s;
  [] when they agree (or differ only in how paths are spelled)."""
  saved, expected = _shapes(saved), _shapes(expected)
  if saved == expected:
    return []
  if saved.keys() != expected.keys():
    # Some containers (e.g. optimizer named tuples) may be spelled
    # differently on disk; the same shapes in the same order still fit.
    if list(saved.values()) == list(expected.values()):
      return []
    missing = sorted(expected.keys() - saved.keys())
    extra = sorted(saved.keys() - expected.keys())
    lines = [f"{item}/{k}: expected {expected[k]}, not in the checkpoint"
             for k in missing[:_MAX_LISTED]]
    lines += [f"{item}/{k}: saved {saved[k]}, not in this model"
              for k in extra[:_MAX_LISTED]]
    if len(missing) + len(extra) > 2 * _MAX_LISTED:
      lines.append(f"... {len(missing)} paths missing, {len(extra)} extra")
  else:
    lines = []
  lines += [f"{item}/{k}: saved shape {saved[k]}, this config {expected[k]}"
            for k in sorted(saved.keys() & expected.keys())
            if saved[k] != expected[k]]
  return lines or [f"{item}: different tree structure"]


class _Damaged(Exception):
  """A step that cannot be used as saved (not a config mismatch)."""


class Checkpointer:
  """Thin wrapper over `ocp.CheckpointManager` with rnnlab's items, plus a
  checksum manifest per step and verified restore (module docstring)."""

  def __init__(self, directory: pathlib.Path, max_to_keep: int | None = None,
               read_only: bool = False):
    self.directory = pathlib.Path(directory).absolute()
    self.read_only = read_only
    self._saving: int | None = None  # the step whose save is in flight
    # Orbax names its cross-process barriers by step ("_async_write_complete.6").
    # Two managers saving the same step at once (latest and best) would meet
    # at one barrier and deadlock; a per-directory prefix keeps them apart.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=not read_only, read_only=read_only,
        multiprocessing_options=ocp.options.MultiprocessingOptions(
            barrier_sync_key_prefix=self.directory.name),
        async_options=ocp.options.AsyncOptions(
            post_finalization_callback=self._manifest_before_commit))
    try:
      self.manager = ocp.CheckpointManager(self.directory, options=options)
    except OSError as e:
      raise CheckpointError(
          f"Cannot create the checkpoint directory {self.directory}: {e}"
      ) from None

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  # Saving.

  def save(self, step: int, params, opt_state, meta: dict[str, Any],
           train_carry=None):
    """Starts an async save of step `step`; `wait()` blocks until it lands.

    `train_carry` is the recurrent state carried between training batches
    (truncated BPTT), saved so that a resumed run continues it exactly.
    """
    self._finish_pending()
    if step in self.manager.all_steps():
      # E.g. the best checkpoint of a step that a run resumed from an older
      # step reaches again: keep the complete one on disk.
      logging.warning("Checkpoint %s exists; not saving it again.",
                      self.directory / str(step))
      return
    items = dict(params=ocp.args.StandardSave(params),
                 opt_state=ocp.args.StandardSave(opt_state),
                 meta=ocp.args.JsonSave(meta))
    if train_carry is not None:
      items["train_carry"] = ocp.args.StandardSave(train_carry)
    self._saving = step
    try:
      self.manager.save(step, args=ocp.args.Composite(**items), force=True)
    except OSError as e:
      raise self._save_error(e) from e

  def _manifest_before_commit(self):
    """Orbax's post-finalization hook (primary host only): the step's data is
    complete in its temporary directory, which is renamed to <step> next."""
    step = self._saving
    try:
      for tmp in ocp.path.step.all_temporary_paths(self.directory):
        if tmp.get_final().name == str(step):
          write_manifest(pathlib.Path(tmp.get()))
          return
      logging.info("No temporary directory of step %s in %s; its manifest "
                   "is written once the save completes.", step,
                   self.directory)
    except Exception as e:  # pylint: disable=broad-except
      # Never fail a save for its manifest; the safety net retries.
      logging.warning("Manifest of step %s in %s not written before the "
                      "commit: %s", step, self.directory, e)

  def _finish_pending(self):
    """Waits for the save in flight; raises CheckpointError if it failed and
    adds a manifest if the pre-commit hook did not."""
    step, self._saving = self._saving, None
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      raise self._save_error(e, step) from e
    if step is None or jax.process_index() != 0:
      return
    step_dir = self.directory / str(step)
    if step_dir.is_dir() and not (step_dir / MANIFEST).exists():
      try:
        write_manifest(step_dir)
        logging.info("Wrote the manifest of %s after its commit.", step_dir)
      except OSError as e:
        logging.warning("Could not write the manifest of %s (it stays "
                        "usable, unverified): %s", step_dir, e)

  def _save_error(self, e: Exception, step: int | None = None
                  ) -> CheckpointError:
    step = self._saving if step is None else step
    self._saving = None
    # Orbax drops a failed step from its list, so this is the newest intact.
    good = [s for s in self.manager.all_steps() if s != step]
    why = ("the disk is full" if isinstance(e, OSError)
           and e.errno == errno.ENOSPC else f"{type(e).__name__}: {e}")
    kept = (f"The previous checkpoint {self.directory / str(max(good))} is "
            "intact" if good else "No earlier checkpoint exists there")
    return CheckpointError(
        f"Saving checkpoint step {step} in {self.directory} failed: {why}. "
        f"{kept}; make room or fix the directory, then rerun to resume.")

  def wait(self):
    self._finish_pending()

  def close(self):
    try:
      self._finish_pending()
    finally:
      # Orbax raises a background failure once, so this does not repeat it.
      self.manager.close()

  # Restoring.

  def restore_latest(self, params_template, opt_state_template,
                     train_carry_template=None):
    """(step, params, opt_state, meta, train_carry) of the newest good step,
    or None when the directory has no checkpoint at all.

    Damaged newer steps are moved aside once an older one restored; raises
    CheckpointError if none restores or the shapes do not fit the templates.
    """
    templates = self._templates(params_template, opt_state_template,
                                train_carry_template)
    found = self._restore_newest(templates, move_aside=not self.read_only)
    if found is None:
      corrupt = self.directory / CORRUPT_DIR
      if corrupt.is_dir() and any(corrupt.iterdir()):
        logging.warning("No checkpoint in %s, only damaged ones set aside in "
                        "%s.", self.directory, corrupt)
      return None
    return _as_result(*found)

  def restore(self, params_template, opt_state_template,
              step: int | None = None, train_carry_template=None):
    """Restores (step, params, opt_state, meta, train_carry) into the
    templates' shapes; train_carry is None without a template. Without
    `step`, the newest good step (see `restore_latest`)."""
    if step is None:
      out = self.restore_latest(params_template, opt_state_template,
                                train_carry_template)
      if out is None:
        raise CheckpointError(f"No checkpoint in {self.directory}.")
      return out
    return _as_result(step, self._restore_step(step, self._templates(
        params_template, opt_state_template, train_carry_template)))

  def restore_params(self, params_template, step: int | None = None):
    """Restores only (step, params): enough for evaluation and sampling.
    Verifies the manifest; without `step`, skips damaged newer steps (never
    moving anything: readers may share the directory with a training run)."""
    templates = {"params": params_template}
    if step is not None:
      return step, self._restore_step(step, templates)["params"]
    found = self._restore_newest(templates, move_aside=False)
    if found is None:
      raise CheckpointError(f"No checkpoint in {self.directory}.")
    return found[0], found[1]["params"]

  @staticmethod
  def _templates(params, opt_state, train_carry):
    templates = {"params": params, "opt_state": opt_state, "meta": None}
    if train_carry is not None:
      templates["train_carry"] = train_carry
    return templates

  def _restore_step(self, step: int, templates):
    if step not in self.manager.all_steps():
      raise CheckpointError(f"No checkpoint {self.directory / str(step)}.")
    try:
      return self._checked_restore(step, templates)
    except _Damaged as e:
      raise CheckpointError(
          f"Checkpoint {self.directory / str(step)} is damaged: {e}") from e

  def _restore_newest(self, templates, move_aside: bool):
    """(step, restored items) of the newest step that restores; None when
    there are no steps. Raises CheckpointError if all are damaged."""
    self.manager.reload()  # the directory may have changed on disk
    damaged = []
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        out = self._checked_restore(step, templates)
      except _Damaged as e:
        logging.warning("Checkpoint %s is damaged, trying an older one: %s",
                        self.directory / str(step), e)
        damaged.append((step, str(e)))
        continue
      if damaged:
        self._set_aside([s for s, _ in damaged], move_aside)
        logging.warning("Restored %s instead of the damaged newer step(s) "
                        "%s.", self.directory / str(step),
                        ", ".join(str(s) for s, _ in damaged))
      return step, out
    if not damaged:
      return None
    raise CheckpointError(
        f"Every checkpoint in {self.directory} is damaged; none was moved or "
        "deleted. Restore them from a backup, or delete them (or use a new "
        "workdir) to start from scratch:\n" + "\n".join(
            f"  step {s}: {why}" for s, why in damaged))

  def _checked_restore(self, step: int, templates) -> dict[str, Any]:
    """Verifies then restores `step`: raises _Damaged if it cannot be used
    as saved, CheckpointError if it does not fit the templates."""
    step_dir = self.directory / str(step)
    problems = verify_manifest(step_dir)
    if problems:
      more = len(problems) - _MAX_LISTED
      raise _Damaged("; ".join(problems[:_MAX_LISTED]) +
                     (f"; and {more} more" if more > 0 else ""))
    if problems is None:
      logging.warning("Checkpoint %s has no %s (saved by an older rnnlab or "
                      "a run stopped mid-commit): restoring it unverified.",
                      step_dir, MANIFEST)
    mismatches = []
    for item, template in templates.items():
      if template is None:
        continue
      if not (step_dir / item).is_dir():
        mismatches.append(f"{item}: not in the checkpoint (this config "
                          "needs it)")
        continue
      try:
        saved = ocp.StandardCheckpointHandler().metadata(step_dir / item)
      except Exception as e:  # pylint: disable=broad-except
        raise _Damaged(f"unreadable {item} metadata: "
                       f"{type(e).__name__}: {_first_line(e)}") from e
      mismatches += _shape_mismatches(item, saved, template)
    if mismatches:
      raise CheckpointError(
          f"Checkpoint {step_dir} does not match the model and optimizer of "
          "this config (saved by a different config?). Use the config it was "
          "trained with, or a new workdir (config.init_from copies what "
          "fits):\n" + "\n".join(
              f"  {m}" for m in mismatches[:2 * _MAX_LISTED]) + (
                  f"\n  ... {len(mismatches)} in all"
                  if len(mismatches) > 2 * _MAX_LISTED else ""))
    items = {item: ocp.args.JsonRestore() if template is None
             else ocp.args.StandardRestore(_abstract(template))
             for item, template in templates.items()}
    try:
      return self.manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # pylint: disable=broad-except
      # Shapes and structure fit, so a failure here is in the data.
      raise _Damaged(f"Orbax cannot read it: {type(e).__name__}: "
                     f"{_first_line(e)}") from e

  def _set_aside(self, steps: list[int], move: bool):
    """Moves damaged `steps` to <directory>/corrupt/<step>-<time> (process
    0; the others wait), so they are no longer steps and can be saved again."""
    if not move:
      return
    error = None
    if jax.process_index() == 0:
      stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
      corrupt = self.directory / CORRUPT_DIR
      for step in steps:
        dest = corrupt / f"{step}-{stamp}"
        n = 1
        while dest.exists():
          dest, n = corrupt / f"{step}-{stamp}.{n}", n + 1
        try:
          corrupt.mkdir(exist_ok=True)
          os.replace(self.directory / str(step), dest)
        except OSError as e:
          error = CheckpointError(
              f"Checkpoint {self.directory / str(step)} is damaged and could "
              f"not be moved aside to {dest}: {e}. Move or delete it, then "
              "rerun.")
          break
        logging.warning("Moved damaged checkpoint %s to %s.",
                        self.directory / str(step), dest)
    if jax.process_count() > 1:  # the others wait until the moves are done
      global _barriers
      _barriers += 1
      ocp.multihost.sync_global_processes(
          f"rnnlab_set_aside_{self.directory.name}_{_barriers}")
    if error:
      raise error
    self.manager.reload()


def _as_result(step: int, out) -> tuple[int, Any, Any, dict, Any]:
  """Restored items -> (step, params, opt_state, meta, train_carry)."""
  return (step, out["params"], out["opt_state"], out["meta"],
          out.get("train_carry"))


def _first_line(e: Exception) -> str:
  text = str(e).strip()
  return text.splitlines()[0][:300] if text else ""
