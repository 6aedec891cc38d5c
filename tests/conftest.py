"""Fixtures, and the suite's process settings (tests/helpers.py). Helpers
live in tests/helpers.py: test modules never import this file."""
from __future__ import annotations

import pathlib

import pytest

from rnnlab.data import text
from tests import helpers

helpers.use_suite_settings()


@pytest.fixture(scope="session")
def corpus_path() -> pathlib.Path:
  """The real Tiny Shakespeare file, found as a user's machine would.

  CI sets RNNLAB_DATA_DIR; elsewhere the cache or a download provides it.
  A missing corpus fails (with the how-to message); it never skips.
  """
  return text.resolve_corpus("tinyshakespeare")
