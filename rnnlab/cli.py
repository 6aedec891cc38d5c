"""Command-line helpers shared by the entry points."""
from __future__ import annotations

import functools
import logging as std_logging
import os
import sys

from absl import logging

from rnnlab.errors import TrainingDiverged, UserError


def friendly_errors(main):
  """Turns the errors a user can fix into one clear line and exit code 2.

  `UserError` messages already say what is wrong and what the valid choices
  are, so a traceback adds nothing. Anything else is a bug: keep the trace.
  """

  @functools.wraps(main)
  def wrapped(argv):
    try:
      return main(argv)
    except UserError as e:
      logging.debug("Full traceback:", exc_info=True)
      sys.stderr.write(f"error: {e}\n")
      sys.exit(2)
    except TrainingDiverged as e:
      sys.stderr.write(f"diverged: {e}\n")
      sys.exit(3)

  return wrapped


class _LibraryInfoFilter(std_logging.Filter):
  """Drops INFO chatter from Orbax (dozens of lines per save)."""

  def filter(self, record):
    return (record.levelno >= std_logging.WARNING or
            "/orbax/" not in record.pathname)


def setup(cache_dir: str | None = None):
  """Quiet library logs; persistent compilation cache for faster reruns."""
  import jax  # pylint: disable=g-import-not-at-top
  from rnnlab.data import text  # pylint: disable=g-import-not-at-top
  logging.get_absl_logger().addFilter(_LibraryInfoFilter())
  cache_dir = cache_dir or os.environ.get("RNNLAB_JAX_CACHE") or str(
      text.cache_dir() / "jax")
  jax.config.update("jax_compilation_cache_dir", cache_dir)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
