"""Model registry: `config.model.name` -> Flax module class.

Cells live in `cells.py` (CELLS), sequence layers in `layers.py` (which
implementation runs them: `implementations.py`), and one file per task
model (e.g. `lm.py`). Each model class has a
`from_config(model_config, **task_fields)` constructor.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import ml_collections

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


def create_model(c: ml_collections.ConfigDict, **task_fields):
  """`config.model` + task-derived fields (e.g. vocab_size) -> module.
  Which model fits which task is the task's `models` (checked before)."""
  return lookup(MODELS, c.name, "model").from_config(c, **task_fields)


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
