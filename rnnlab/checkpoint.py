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
* A manifest entry must name a regular file inside its own step directory:
  an absolute path, a `..` component, a symlink leading outside, a FIFO, a
  device or a directory is damage, and is refused before anything is opened
  (so a FIFO cannot hang the restore). So is a manifest that is not JSON of
  the written shape ({"files": {path: {"sha256": hex, "size": int}}}).
* A step without a manifest (saved by an older rnnlab, or by a run killed
  in the narrow safety-net window) is restored *unverified*: logged, its
  shapes checked against the model, then restored if Orbax can read it; if
  Orbax cannot, it counts as damaged like a manifest mismatch.
* Damage needs evidence: a sha256 or size mismatch, a file that is missing
  (listed in the manifest, or needed by Orbax), or a file that cannot be
  parsed (manifest, Orbax metadata or data). A *read error* is not
  evidence: an OSError other than "no such file" (EIO, ESTALE, EACCES, ...)
  or a MemoryError, raised
  directly, chained inside an Orbax error, or reported by tensorstore as
  "[OS error: ...]". Each read is retried (`READ_RETRY_DELAYS`); if it keeps
  failing, CheckpointReadError names the path and the error, nothing is
  moved or deleted, and the entry points exit 75 (EX_TEMPFAIL) so that a
  scheduler can requeue; the rerun resumes normally.
* Restore (`restore_latest`) tries steps newest first. A damaged step is
  skipped with a warning. Once an older step restores, the damaged newer
  ones are moved to `<checkpoints>/corrupt/<step>-<time>` (Orbax only lists
  directories named by a bare step number, so they are out of its way and
  the resumed run can save those steps again) and the run continues from
  the good step. Nothing is moved unless a good step was found: if every
  step is damaged, CheckpointError lists them all and the directory is left
  as it was, so a rerun fails the same way instead of starting from scratch.
* A step whose shapes or tree structure differ from the model is not
  damage: CheckpointError names the parameter paths, the saved shapes and
  this config's shapes, and nothing is moved.
* Several processes restore the same step: process 0 checks the steps
  newest first and broadcasts its pick; every other process checks that
  step too. If another process finds it damaged (it sees other files than
  process 0, e.g. no shared file system), all of them stop with
  CheckpointError rather than restore different steps; a read error on any
  process stops all of them with CheckpointReadError.
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
import re
import stat
import time
from typing import Any, Callable

from absl import logging
import jax
import orbax.checkpoint as ocp

from rnnlab import distributed
from rnnlab.errors import CheckpointError, CheckpointReadError

MANIFEST = "rnnlab_manifest.json"
CORRUPT_DIR = "corrupt"  # damaged steps moved aside (not a step name)
# Written by Orbax after the manifest (see the module docstring).
_UNLISTED = {MANIFEST, "_CHECKPOINT_METADATA", "commit_success.txt"}
_MAX_LISTED = 8  # problems or paths shown in one message
_barriers = 0  # makes each set-aside barrier name unique, as Orbax requires
# Seconds to wait before each retry of a read that failed at the OS level
# (len + 1 attempts in all); tests shorten them.
READ_RETRY_DELAYS = (0.5, 1.0)
# Errnos that mean "not there": evidence of a missing file, not a read error.
_MISSING = (errno.ENOENT, errno.ENOTDIR)
# tensorstore's OS errors: "... [OS error: Input/output error]" (some
# versions also give the number: "[OS error 5: ...]").
_TS_OS_ERROR = re.compile(r"\[OS error(?: (\d+))?: ([^\]]*)\]")
_TS_FILE = re.compile(r'local file "([^"]+)"')
_STRERROR = {os.strerror(n): n for n in errno.errorcode}


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
  matches); None when the step has no manifest (unverified).

  Only evidence of damage is a problem (module docstring); a read that keeps
  failing at the OS level raises CheckpointReadError instead.
  """
  step_dir = pathlib.Path(step_dir)
  path = step_dir / MANIFEST
  root = os.path.realpath(step_dir)
  try:
    data = retry_reads(path, _read_regular, path, root)
  except _Damaged as e:
    return [f"{MANIFEST}: {e}"]
  except (FileNotFoundError, NotADirectoryError):
    return None
  try:
    files = _manifest_files(json.loads(data.decode("utf-8")))
  except ValueError as e:  # incl. JSON and UTF-8 decoding errors
    return [f"unreadable {MANIFEST}: {e}"]
  problems = []
  for rel, want in sorted(files.items()):
    why = _bad_entry_name(rel)
    if why:
      problems.append(f"{rel!r}: {why}")
      continue
    p = step_dir / rel
    try:
      size, digest = retry_reads(p, _hash_regular, p, root, want["size"])
    except _Damaged as e:
      problems.append(f"{rel}: {e}")
      continue
    except (FileNotFoundError, NotADirectoryError):
      problems.append(f"{rel}: missing")
      continue
    if size != want["size"]:
      problems.append(f"{rel}: {size} bytes, {want['size']} when saved"
                      + (" (truncated)" if size < want["size"] else ""))
    elif digest != want["sha256"]:
      problems.append(f"{rel}: contents changed (sha256 mismatch)")
  return problems


def _manifest_files(manifest) -> dict[str, dict[str, Any]]:
  """The "files" of a parsed manifest; ValueError naming what is malformed
  (a valid JSON document of the wrong shape is damage, not a crash)."""
  if not isinstance(manifest, dict):
    raise ValueError(f"expected a JSON object, got {type(manifest).__name__}")
  files = manifest.get("files")
  if not isinstance(files, dict):
    raise ValueError('"files" must be an object of path -> {sha256, size}, '
                     f"got {type(files).__name__}")
  for rel, want in files.items():
    if not (isinstance(want, dict) and isinstance(want.get("sha256"), str)
            and re.fullmatch(r"[0-9a-f]{64}", want["sha256"])
            and type(want.get("size")) is int and want["size"] >= 0):  # pylint: disable=unidiomatic-typecheck
      raise ValueError(f"entry {rel!r} must be {{\"sha256\": <64 hex "
                       f"digits>, \"size\": <bytes>}}, got {want!r:.200}")
  return files


def _bad_entry_name(rel: str) -> str | None:
  """Why manifest entry `rel` cannot name a file of its step, or None."""
  parts = rel.split("/")
  if not rel or "\0" in rel or "\\" in rel:
    return "not a relative path"
  if rel.startswith("/"):
    return "an absolute path (entries are relative to the step directory)"
  if ".." in parts:
    return "a '..' component leads outside the step directory"
  if any(part in ("", ".") for part in parts):
    return "not a normalised relative path"
  return None


def _file_kind(mode: int) -> str:
  for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                     (stat.S_ISCHR, "a character device"),
                     (stat.S_ISBLK, "a block device"),
                     (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symlink")):
    if test(mode):
      return kind
  return "not a regular file"


def _open_regular(path: pathlib.Path, root: str) -> int:
  """A read-only descriptor of `path`, a regular file inside directory
  `root` (a real path). Raises _Damaged for anything else, checked with
  lstat before opening: opening a FIFO would block, a device could act."""
  real = os.path.realpath(path)
  if os.path.commonpath([real, root]) != root:
    raise _Damaged(f"leads outside its step directory (to {real})")
  st = os.lstat(real)
  if not stat.S_ISREG(st.st_mode):
    raise _Damaged(f"{_file_kind(st.st_mode)}, not a regular file")
  # O_NOFOLLOW | O_NONBLOCK: never block on or follow whatever replaced it
  # since the lstat; fstat then checks that it is still the same file.
  fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) |
               getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
  try:
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
      raise _Damaged("replaced while being checked")
  except BaseException:
    os.close(fd)
    raise
  return fd


def _read_regular(path: pathlib.Path, root: str) -> bytes:
  with os.fdopen(_open_regular(path, root), "rb") as f:
    return f.read()


def _hash_regular(path: pathlib.Path, root: str, want_size: int
                  ) -> tuple[int, str | None]:
  """(size, sha256) of regular file `path`; the hash is None when the size
  already differs from `want_size`."""
  with os.fdopen(_open_regular(path, root), "rb") as f:
    size = os.fstat(f.fileno()).st_size
    if size != want_size:
      return size, None
    h = hashlib.sha256()
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
    return size, h.hexdigest()


def read_error(e: BaseException) -> BaseException | None:
  """The OS-level read error behind `e`, or None when `e` is evidence about
  the data (a parse error, a missing file) or not about reading at all.

  Looks at `e` and its __cause__/__context__ chain: an OSError other than
  "no such file", a MemoryError, or a tensorstore error that carries
  "[OS error: ...]" (returned as an OSError).
  """
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, CheckpointReadError):
      return None  # already retried and reported
    if isinstance(e, MemoryError):
      return e
    if isinstance(e, OSError):
      missing = (isinstance(e, (FileNotFoundError, NotADirectoryError)) or
                 e.errno in _MISSING)
      return None if missing else e
    m = _TS_OS_ERROR.search(str(e))
    if m:
      what = m.group(2).strip()
      code = int(m.group(1)) if m.group(1) else _STRERROR.get(what)
      if code in _MISSING:
        return None
      files = _TS_FILE.findall(str(e))
      return OSError(code, what, files[-1]) if files else OSError(code, what)
    e = e.__cause__ or e.__context__
  return None


def retry_reads(path, fn: Callable[..., Any], *args, **kwargs):
  """fn(*args, **kwargs), retried after `READ_RETRY_DELAYS` while it fails
  with an OS-level read error (`read_error`); if the last attempt fails too,
  CheckpointReadError naming the file (or else `path`) and the error. Other
  exceptions pass through at once."""
  for attempt, delay in enumerate((*READ_RETRY_DELAYS, None), start=1):
    try:
      return fn(*args, **kwargs)
    except Exception as e:  # pylint: disable=broad-except
      error = read_error(e)
      if error is None:
        raise
      where = getattr(error, "filename", None) or path
      if isinstance(error, OSError) and error.strerror:
        what = (f"[Errno {error.errno}] " if error.errno is not None
                else "") + error.strerror
      else:
        what = f"{type(error).__name__}: {_first_line(error)}".rstrip(": ")
      if delay is None:
        raise CheckpointReadError(
            f"Cannot read checkpoint {where}: {what} ({attempt} attempts). "
            "A read error is not damage: nothing was moved or deleted; "
            "rerun once the file system recovers to resume.",
            path=where) from e
      logging.warning("Reading %s failed (%s); retrying in %g s.", where,
                      what, delay)
      time.sleep(delay)


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
    CheckpointError if none restores or the shapes do not fit the templates,
    CheckpointReadError (nothing moved) if a read keeps failing. Several
    processes all restore the step that process 0 picked.
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
    return _as_result(*self._restore_newest(self._templates(
        params_template, opt_state_template, train_carry_template),
                                            move_aside=False, only=step))

  def restore_params(self, params_template, step: int | None = None):
    """Restores only (step, params): enough for evaluation and sampling.
    Verifies the manifest; without `step`, skips damaged newer steps (never
    moving anything: readers may share the directory with a training run)."""
    found = self._restore_newest({"params": params_template},
                                 move_aside=False, only=step)
    if found is None:
      raise CheckpointError(f"No checkpoint in {self.directory}.")
    return found[0], found[1]["params"]

  @staticmethod
  def _templates(params, opt_state, train_carry):
    templates = {"params": params, "opt_state": opt_state, "meta": None}
    if train_carry is not None:
      templates["train_carry"] = train_carry
    return templates

  def _restore_newest(self, templates, move_aside: bool,
                      only: int | None = None):
    """(step, restored items) of the newest step that restores, or of step
    `only`; None when there are no steps. Raises CheckpointError if all are
    damaged (or `only` is), CheckpointReadError if a read keeps failing.

    Process 0 picks each step to try and broadcasts it; every process checks
    and restores that one, and they agree on the outcome before going on.
    """
    retry_reads(self.directory, self.manager.reload)  # it may have changed
    damaged = []  # [step, why] as process 0 found them, known to all
    while True:
      pick = self._pick_on_process_0(templates, damaged, only)
      damaged, step = pick["damaged"], pick["step"]
      if step is None:
        break
      path = self.directory / str(step)
      # The others check process 0's pick before Orbax's restore, which
      # ends in a barrier that a process stopping early would leave hanging.
      code, mine = (_OK, None) if jax.process_index() == 0 else _attempt(
          self._verify, step, templates)
      codes = distributed.allgather_int(code)
      if any(codes):
        self._disagreement(path, codes, mine)
      code, out = _attempt(self._orbax_restore, step, templates)
      codes = distributed.allgather_int(code)
      if codes[0] == _DAMAGED and _READ not in codes:
        # Process 0's verdict decides, as for its checks; the others learn
        # its reason from the next pick.
        why = str(out) if jax.process_index() == 0 else "see process 0"
        if only is None:
          logging.warning("Checkpoint %s is damaged, trying an older one: "
                          "%s", path, why)
        damaged.append([step, why])
        continue
      if any(codes):
        self._disagreement(path, codes, out)
      if damaged and only is None:
        self._set_aside([s for s, _ in damaged], move_aside)
        logging.warning("Restored %s instead of the damaged newer step(s) "
                        "%s.", path, ", ".join(str(s) for s, _ in damaged))
      return step, out
    if not damaged:
      return None
    raise CheckpointError(
        f"Every checkpoint in {self.directory} is damaged; none was moved or "
        "deleted. Restore them from a backup, or delete them (or use a new "
        "workdir) to start from scratch:\n" + "\n".join(
            f"  step {s}: {why}" for s, why in damaged))

  def _pick_on_process_0(self, templates, damaged, only):
    """Process 0's pick, on every process: {"step": the newest step not yet
    found damaged that passes its checks (None if none), "damaged": the
    damaged ones so far}. Process 0's errors are raised on every process."""
    pick, error = None, None
    if jax.process_index() == 0:
      try:
        pick = self._pick(templates, damaged, only)
      except Exception as e:  # pylint: disable=broad-except
        if jax.process_count() == 1:
          raise
        error = e
        pick = {"error": type(e).__name__, "message": str(e),
                "path": str(getattr(e, "path", "") or "")}
    pick = distributed.broadcast_json(pick)
    if error is not None:
      raise error
    if "error" in pick:
      if pick["error"] == CheckpointReadError.__name__:
        raise CheckpointReadError(
            f"Process 0: {pick['message']}", path=pick["path"] or None)
      if pick["error"] == CheckpointError.__name__:
        raise CheckpointError(pick["message"])
      raise RuntimeError(f"Process 0 failed to restore {self.directory}: "
                         f"{pick['error']}: {pick['message']}")
    return pick

  def _pick(self, templates, damaged, only):
    damaged = [list(d) for d in damaged]
    found = {s: why for s, why in damaged}
    steps = sorted(self.manager.all_steps(), reverse=True)
    if only is not None:
      if only not in steps:
        raise CheckpointError(f"No checkpoint {self.directory / str(only)}.")
      if only in found:
        raise CheckpointError(f"Checkpoint {self.directory / str(only)} is "
                              f"damaged: {found[only]}")
      steps = [only]
    for step in steps:
      if step in found:
        continue
      try:
        self._verify(step, templates)
      except _Damaged as e:
        if only is not None:
          raise CheckpointError(f"Checkpoint {self.directory / str(step)} "
                                f"is damaged: {e}") from e
        logging.warning("Checkpoint %s is damaged, trying an older one: %s",
                        self.directory / str(step), e)
        damaged.append([step, str(e)])
        continue
      return {"step": step, "damaged": damaged}
    return {"step": None, "damaged": damaged}

  def _disagreement(self, path: pathlib.Path, codes: list[int], mine):
    """Raises for an outcome that not every process shares: a read error
    anywhere stops all (CheckpointReadError), else a step that process 0
    found good and another did not is an error on all (CheckpointError)."""
    readers = [i for i, c in enumerate(codes) if c == _READ]
    if readers:
      if isinstance(mine, CheckpointReadError):
        raise mine
      raise CheckpointReadError(
          f"Process(es) {readers} cannot read checkpoint {path} (see their "
          "logs). A read error is not damage: nothing was moved or deleted; "
          "rerun once the file system recovers to resume.", path=path)
    others = [i for i, c in enumerate(codes) if c]
    why = f": {mine}" if isinstance(mine, Exception) else ""
    raise CheckpointError(
        f"Checkpoint {path} passed process 0's checks, but process(es) "
        f"{others} cannot use it{why}. Every process must see the same "
        "files (one shared file system); nothing was moved or deleted.")

  def _verify(self, step: int, templates):
    """Checks `step` before restoring it: raises _Damaged if it cannot be
    used as saved, CheckpointError if it does not fit the templates,
    CheckpointReadError if reading keeps failing."""
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
      if not retry_reads(step_dir / item, _is_dir, step_dir / item):
        mismatches.append(f"{item}: not in the checkpoint (this config "
                          "needs it)")
        continue
      try:
        saved = retry_reads(step_dir / item,
                            ocp.StandardCheckpointHandler().metadata,
                            step_dir / item)
      except CheckpointReadError:
        raise
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

  def _orbax_restore(self, step: int, templates) -> dict[str, Any]:
    """Orbax's restore of a checked `step`: _Damaged if it cannot parse the
    data, CheckpointReadError if reading keeps failing."""
    items = {item: ocp.args.JsonRestore() if template is None
             else ocp.args.StandardRestore(_abstract(template))
             for item, template in templates.items()}
    try:
      return retry_reads(self.directory / str(step), self.manager.restore,
                         step, args=ocp.args.Composite(**items))
    except CheckpointReadError:
      raise
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


# Outcomes of a step on one process, gathered across processes.
_OK, _DAMAGED, _READ, _UNFIT = 0, 1, 2, 3


def _attempt(fn, *args) -> tuple[int, Any]:
  """(outcome code, result or exception) of fn(*args)."""
  try:
    return _OK, fn(*args)
  except _Damaged as e:
    return _DAMAGED, e
  except CheckpointReadError as e:
    return _READ, e
  except CheckpointError as e:
    return _UNFIT, e


def _is_dir(path: pathlib.Path) -> bool:
  """Whether `path` is a directory; False when it is not there, but an
  OS error (unlike Path.is_dir) raises, for retry_reads."""
  try:
    return stat.S_ISDIR(os.stat(path).st_mode)
  except (FileNotFoundError, NotADirectoryError):
    return False


def _first_line(e: BaseException) -> str:
  text = str(e).strip()
  return text.splitlines()[0][:300] if text else ""
