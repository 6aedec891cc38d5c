"""Command-line helpers shared by the entry points."""
from __future__ import annotations

import functools
import hashlib
import json
import logging as std_logging
import os
import pathlib
import re
import sys
from typing import Any

from absl import logging

from rnnlab import base_config
from rnnlab.errors import CheckpointReadError, Preempted
from rnnlab.errors import TrainingDiverged, UserError

# 128 + SIGTERM, what a shell reports for a process SIGTERM ended: schedulers
# and launch scripts that requeue preempted jobs already expect it.
PREEMPTED_EXIT_CODE = 143
# EX_TEMPFAIL (sysexits.h), "try again later": a checkpoint could not be read
# (I/O error, stale NFS handle, ...) though nothing shows it is damaged.
READ_ERROR_EXIT_CODE = 75


def friendly_errors(main):
  """Turns the errors a user can fix into one clear line and an exit code.

  Exit codes: 2 `UserError` (its message already says what is wrong and the
  valid choices, so a traceback adds nothing), 3 `TrainingDiverged`, 75
  `CheckpointReadError` (EX_TEMPFAIL: a checkpoint read kept failing at the
  OS level; nothing was moved or deleted, so a scheduler can requeue and the
  rerun resumes), 143 `Preempted` (SIGTERM: a checkpoint was saved at the
  current step; rerun the same command to resume). Anything else is a bug:
  keep the trace.
  """

  @functools.wraps(main)
  def wrapped(argv):
    try:
      return main(argv)
    except UserError as e:
      logging.debug("Full traceback:", exc_info=True)
      _exit_user_error(e)
    except TrainingDiverged as e:
      sys.stderr.write(f"diverged: {e}\n")
      sys.exit(3)
    except CheckpointReadError as e:
      logging.debug("Full traceback:", exc_info=True)
      message = " ".join(str(e).split())  # one line, whatever the OS said
      sys.stderr.write(f"read error: {message}\n")
      sys.exit(READ_ERROR_EXIT_CODE)
    except Preempted as e:
      sys.stderr.write(f"preempted: {e}\n")
      sys.exit(PREEMPTED_EXIT_CODE)

  return wrapped


def comma_choices(value: str, valid, flag: str) -> list[str]:
  """"a,b" -> ["a", "b"], each one of `valid`; else a UserError naming the
  flag, the unknown names and the valid choices."""
  names = [x for x in value.split(",") if x]
  bad = [x for x in names if x not in valid]
  if bad or not names:
    raise UserError(f"{flag}={value!r}: unknown {bad}. Valid choices: "
                    f"{', '.join(valid)}.")
  return names


def read_texts(texts: list[str], file: str, verb: str) -> list[str]:
  """--text values, then the non-empty lines of --file ("-" = stdin); an
  error says there is nothing to `verb`."""
  out = list(texts)
  if file:
    try:
      lines = (sys.stdin.read() if file == "-" else
               open(file, encoding="utf-8").read()).splitlines()
    except (OSError, UnicodeDecodeError) as e:
      raise UserError(f"--file={file!r}: {e}") from None
    out += [line for line in lines if line.strip()]
  if not out:
    raise UserError(f"Nothing to {verb}: give --text=... (repeatable) or "
                    "--file=<path, one text per line; - for stdin>.")
  return out


def parse_flags(argv):
  """absl's flag parsing (app.run's flags_parser), except that a config that
  cannot be loaded is one clear line and exit 2, like a UserError: a missing
  config file, or a UserError from its get_config (e.g. an unknown arg),
  which config_flags would wrap in a traceback; and a key renamed when the
  config got its task sections, named with its new key."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  for arg in argv[1:]:
    if arg == "--":
      break
    match = re.match(r"--config\.([\w.]+)(=|$)", arg)
    renamed = match and base_config.renamed_key_error(match.group(1))
    if renamed:  # before absl, whose message would not name the new key
      _exit_user_error(renamed)
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    cause, user = e, None
    while cause is not None:  # the innermost UserError has the clean message
      user = cause if isinstance(cause, UserError) else user
      cause = cause.__cause__ or cause.__context__
    # Else absl's own message, e.g. "flag --config.train.steps=abc: invalid
    # literal for int() with base 10: 'abc'".
    _exit_user_error(user or e)
  for name in flags.FLAGS:
    flag = flags.FLAGS[name]
    if flag.present and hasattr(flag, "config_filename"):  # a config flag
      # "path.py:arg" -> path.py
      path = config_flags.get_config_filename(flag).split(":", 1)[0]
      if not os.path.isfile(path):
        _exit_user_error(UserError(
            f"--{name}={path}: no such config file (looked in {os.getcwd()})."
            " Configs are Python files with get_config(), e.g. "
            "configs/gru_shakespeare.py."))
  return rest


def _exit_user_error(e: Exception):
  sys.stderr.write(f"error: {e}\n")
  sys.exit(2)


def run_command(define_flags, main):
  """Entry point of a command whose absl flags are defined only when it
  runs (so importing its module defines no flags): define, set up, run."""
  from absl import app  # pylint: disable=g-import-not-at-top
  define_flags()
  setup()
  app.run(friendly_errors(main), flags_parser=parse_flags)


class _LibraryInfoFilter(std_logging.Filter):
  """Drops INFO chatter from Orbax (dozens of lines per save), and its
  warnings that a read-only manager (evaluation, sampling) is read-only."""

  def filter(self, record):
    if "/orbax/" not in record.pathname:
      return True
    if record.levelno < std_logging.WARNING:
      return False
    message = record.getMessage()
    return not ("read_only=True" in message or "is read only" in message)


def setup(cache_dir: str | None = None):
  """Quiet library logs; persistent compilation cache for faster reruns; a
  warning if this jaxlib has a known CPU regression (`jax_guard`)."""
  import jax  # pylint: disable=g-import-not-at-top
  from rnnlab import jax_guard  # pylint: disable=g-import-not-at-top
  from rnnlab.data import text  # pylint: disable=g-import-not-at-top
  logging.get_absl_logger().addFilter(_LibraryInfoFilter())
  cache_dir = cache_dir or os.environ.get("RNNLAB_JAX_CACHE") or str(
      text.cache_dir() / "jax")
  jax.config.update("jax_compilation_cache_dir", cache_dir)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  jax_guard.check()


def default_workdir(config_spec: str, overrides: dict[str, Any]) -> str:
  """The workdir of a command without --workdir: runs/<config file stem>,
  then the `:arg` (if any) and a short hash of the --config.* overrides (if
  any), made filesystem-safe. The same command gives the same path, so
  rerunning it resumes; another arg or override gives another run.

  "configs/gru_shakespeare.py:runlocal", {"train.steps": 5}
  -> "runs/gru_shakespeare_runlocal_<8 hex digits>"
  """
  path, _, arg = config_spec.partition(":")
  parts = [pathlib.Path(path).stem]
  safe_arg = re.sub(r"[^A-Za-z0-9._-]+", "-", arg).strip(".-")
  if safe_arg:
    parts.append(safe_arg)
  if overrides or safe_arg != arg:  # unsafe characters could collide
    key = json.dumps({"arg": arg, "overrides": overrides}, sort_keys=True,
                     default=repr)
    parts.append(hashlib.sha256(key.encode()).hexdigest()[:8])
  return str(pathlib.Path("runs") / "_".join(parts))

