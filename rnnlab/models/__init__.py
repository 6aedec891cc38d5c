"""Model registry: `config.model.name` -> Flax module class.

Cells live in `cells.py` (CELLS), sequence layers in `layers.py` (which
implementation runs them: `implementations.py`), and one file per task
model (e.g. `lm.py`). Each model class has a
`from_config(model_config, **task_fields)` constructor.
"""
from __future__ import annotations

import dataclasses
import inspect

import flax.linen as nn
import ml_collections

from rnnlab.errors import UserError
from rnnlab.models import classifier
from rnnlab.models import lm
from rnnlab.models import seq2seq
from rnnlab.models import sequence
from rnnlab.registry import lookup

MODELS = {
    "rnn_lm": lm.RecurrentLM,
    "attention_lm": lm.AttentionLM,
    "seq2seq": seq2seq.Seq2Seq,
    "classifier": classifier.SequenceClassifier,
    "sequence": sequence.SequenceModel,
}


def _fits(cls, task_fields) -> bool:
  """Whether `cls.from_config` takes exactly the fields this task gives."""
  params = list(inspect.signature(cls.from_config).parameters.values())[1:]
  names = {p.name for p in params}
  required = {p.name for p in params if p.default is p.empty}
  return set(task_fields) <= names and required <= set(task_fields)


def create_model(c: ml_collections.ConfigDict, **task_fields):
  """`config.model` + task-derived fields (e.g. vocab_size) -> module."""
  cls = lookup(MODELS, c.name, "model")
  if not _fits(cls, task_fields):
    fitting = sorted(n for n, m in MODELS.items() if _fits(m, task_fields))
    raise UserError(
        f"model.name={c.name!r} does not fit this task (it gives the model "
        f"{', '.join(sorted(task_fields))}). Valid choices: "
        f"{', '.join(map(repr, fitting))}.")
  return cls.from_config(c, **task_fields)


def with_implementation(model: nn.Module, implementation: str) -> nn.Module:
  """A copy of `model` whose recurrent layers (every submodule field with
  an `implementation`) run `implementation`; parameters are unchanged."""
  changes = {}
  for field in dataclasses.fields(model):
    if field.name in ("parent", "name"):
      continue
    value = getattr(model, field.name)
    if field.name == "implementation":
      changes[field.name] = implementation
    elif isinstance(value, nn.Module):
      changes[field.name] = with_implementation(value, implementation)
  return model.clone(parent=None, **changes)
