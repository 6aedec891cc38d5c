"""A config checked against what rnnlab has registered, before any data is
read: the schema (`base_config.validate`), every registered name, and that
the model fits the task.

base_config knows the keys, their types and ranges, and imports no
registry; the registries (tasks, models, cells, optimizers, schedules) sit
above it, and this module above them.
"""
from __future__ import annotations

import ml_collections

from rnnlab import base_config
from rnnlab import models
from rnnlab import optim
from rnnlab import tasks
from rnnlab.errors import UserError
from rnnlab.models import cells


def registry_keys() -> dict[str, tuple[str, dict]]:
  """Keys naming a registry entry: key -> (what, registry)."""
  return {"task": ("task", tasks.TASKS),
          "model.name": ("model", models.MODELS),
          "model.cell": ("cell", cells.CELLS),
          "optim.name": ("optimizer", optim.OPTIMIZERS),
          "optim.schedule": ("schedule", optim.SCHEDULES)}


def validate(config: ml_collections.ConfigDict):
  """Raises UserError naming the first key of the wrong type, an
  out-of-range size or rate, an unknown name (with the valid choices), or a
  model that does not fit the task."""
  base_config.validate(config)
  for key, (what, registry) in registry_keys().items():
    value = config
    for part in key.split("."):
      value = value[part]
    if value not in registry:
      raise UserError(f"Unknown {what} {value!r} (config.{key}). Valid "
                      f"choices: {', '.join(map(repr, sorted(registry)))}.")
  tasks.check_model(config)
