"""Name -> object registries with errors that list the valid choices.

Every user-facing name (cell, model, task, optimizer, schedule, ...) is looked
up through `lookup`, so a typo always produces the same kind of message:

    ValueError: Unknown cell 'gur'. Valid choices: 'gru', 'lstm', 'rnn'.
"""
from __future__ import annotations

from typing import Mapping, TypeVar

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
