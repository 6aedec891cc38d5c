"""A config checked against what rnnlab has registered, before any data is
read: the schema (`base_config.validate`), every `table` rule (registered
names and the choices the modules above base_config define), that the
model fits the task (`Task.models`), and the task's own `check_config`.

base_config knows the keys, their types and rules, and imports no
registry; the registries (tasks, models, cells, optimizers, schedules) sit
above it, and this module above them.
"""
from __future__ import annotations

from typing import Collection

import ml_collections

from rnnlab import base_config
from rnnlab import models
from rnnlab import optim
from rnnlab import tasks
from rnnlab.data import classification
from rnnlab.data import seq2seq as seq2seq_data
from rnnlab.data import series
from rnnlab.models import attention
from rnnlab.models import cells
from rnnlab.models import classifier
from rnnlab.models import implementations
from rnnlab.models import layers
from rnnlab.models import lm
from rnnlab.models import seq2seq as seq2seq_model
from rnnlab.tasks import forecast
from rnnlab.tasks import synthetic

# The table of each base_config `table(name)` rule. Registries are the
# dicts themselves, so that entries a user module registers count.
TABLES: dict[str, Collection[str]] = {
    "task": tasks.TASKS,
    "model": models.MODELS,
    "cell": cells.CELLS,
    "optimizer": optim.OPTIMIZERS,
    "schedule": optim.SCHEDULES,
    "embedding": lm.EMBEDDINGS,
    "activation": cells.ACTIVATIONS,
    "attention score": attention.SCORES,
    "implementation": implementations.IMPLEMENTATIONS,
    "layer schedule": layers.SCHEDULES,
    "bidirectional merge": layers.MERGES,
    "dtype": layers.DTYPES,
    "classification source": classification.SOURCES,
    "tokenization": classification.TOKENIZATIONS,
    "pooling": classifier.POOLINGS,
    "input projection": classifier.INPUT_PROJECTIONS,
    "series": series.SOURCES,
    "missing-value policy": series.MISSING_CHOICES,
    "arima trend": forecast.TREND_CHOICES,
    "seq2seq problem": seq2seq_data.PROBLEMS,
    "number language": seq2seq_data.NUMBER_LANGUAGES,
    "seq2seq attention": seq2seq_model.ATTENTION_CHOICES,
    "synthetic problem": synthetic.LOSSES,
}


def validate(config: ml_collections.ConfigDict):
  """Raises UserError naming the first key of the wrong type, against its
  rule, or with an unknown name (with the valid choices); or a model that
  does not fit the task; or what the task's own check refuses."""
  base_config.validate(config)
  for key, rule in base_config.RULES.items():
    if rule is not None and rule.table:
      base_config.check_table(config, key, rule.table, TABLES[rule.table])
  task = tasks.TASKS[config.task]
  task.check_model(config)
  task.check_config(config)


def _valid_values(rule: base_config.Rule | None) -> str:
  if rule is None:
    return "any string (free-form)"
  if rule.table:
    return "one of " + ", ".join(f"`{c}`" for c in sorted(TABLES[rule.table]))
  if rule.choices:
    return "one of " + ", ".join(f"`{c}`" for c in rule.choices)
  return rule.text


def reference_markdown() -> str:
  """The tables of docs/config.md: every key (default and valid values),
  then the old names; tests/test_config_sections.py checks that the doc
  holds them verbatim (regenerate with `python -m rnnlab.config_check`)."""
  leaves = dict(base_config.leaves(base_config.get_config()))
  rows = ["| Key | Default | Valid values |", "|---|---|---|"]
  for key, rule in base_config.RULES.items():
    default = leaves[key]
    shown = tuple(default) if isinstance(default, list) else default
    rows.append(f"| `{key}` | `{shown!r}` | {_valid_values(rule)} |")
  rows += ["", "| Old key (before the sections) | New key |", "|---|---|"]
  for old, new in base_config.MOVED.items():
    if isinstance(new, str):
      rows.append(f"| `{old}` | `{new}` |")
    else:
      rows.append(f"| `{old}` | " + "; ".join(
          f"`{key}` (task {task})" for task, key in new.items()) + " |")
  return "\n".join(rows) + "\n"


if __name__ == "__main__":
  print(reference_markdown(), end="")
