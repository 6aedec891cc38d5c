"""Name -> object registries with errors that list the valid choices.

Every user-facing name (cell, model, task, optimizer, schedule, ...) is looked
up through `lookup`, so a typo always produces the same kind of message:

    ValueError: Unknown cell 'gur'. Valid choices: 'gru', 'lstm', 'rnn'.

A researcher's own module adds entries (`CELLS["mgu"] = MinimalGatedCell`)
when it is imported; `config.imports` names such modules, and
`import_modules` imports them before any registry is read.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pathlib
import sys
from typing import Iterable, Mapping, TypeVar

from rnnlab.errors import UserError

T = TypeVar("T")


def lookup(registry: Mapping[str, T], name: str, what: str) -> T:
  """Returns `registry[name]`, or raises a ValueError naming the choices."""
  try:
    return registry[name]
  except (KeyError, TypeError):
    choices = ", ".join(repr(k) for k in sorted(registry))
    raise UserError(
        f"Unknown {what} {name!r}. Valid choices: {choices}.") from None


# Each entry of config.imports imported so far (module name or resolved
# file path): imported once per process.
_IMPORTED: set[str] = set()


def import_modules(names: Iterable[str]) -> None:
  """Imports each of `names` once, for the registrations it makes.

  A name is a module on sys.path ("mylab.cells") or a Python file
  ("path/to/cells.py", relative to the working directory). One that fails
  to import is a one-line UserError naming it and the error.
  """
  for name in names:
    is_file = name.endswith(".py")
    key = str(pathlib.Path(name).resolve()) if is_file else name
    if key in _IMPORTED:
      continue
    try:
      if is_file:
        _import_file(pathlib.Path(key), name)
      else:
        importlib.import_module(name)
    except UserError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      detail = " ".join(str(e).split())  # one line, whatever it said
      raise UserError(f"config.imports: importing {name!r} failed: "
                      f"{type(e).__name__}: {detail}") from e
    _IMPORTED.add(key)


def _import_file(path: pathlib.Path, name: str) -> None:
  if not path.is_file():
    raise UserError(f"config.imports: {name!r} is not a file (paths are "
                    f"relative to the working directory, {pathlib.Path.cwd()}"
                    ").")
  # A stable, unique module name: dataclasses (Flax modules) look their
  # module up in sys.modules while the file runs.
  digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
  module_name = f"rnnlab_imports_{path.stem}_{digest}"
  spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[module_name] = module
  try:
    spec.loader.exec_module(module)
  except BaseException:
    del sys.modules[module_name]
    raise
