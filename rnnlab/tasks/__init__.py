"""Task registry: `config.task` -> Task class.

A task owns its data, builds its model, and defines the training loss and
the evaluation metrics; `rnnlab.train` runs any task the same way. To add
one, subclass `base.Task`, implement its methods, and register it here.
"""
from __future__ import annotations

from rnnlab.errors import UserError
from rnnlab.registry import lookup
from rnnlab.tasks import base
from rnnlab.tasks import char_lm
from rnnlab.tasks import classify
from rnnlab.tasks import forecast
from rnnlab.tasks import seq2seq
from rnnlab.tasks import synthetic

TASKS: dict[str, type[base.Task]] = {
    "char_lm": char_lm.CharLMTask,
    "classify": classify.ClassifyTask,
    "forecast": forecast.ForecastTask,
    "word_lm": char_lm.WordLMTask,
    "seq2seq": seq2seq.Seq2SeqTask,
    "synthetic": synthetic.SyntheticTask,
}


# The model names each task can build and feed (models.MODELS).
TASK_MODELS: dict[str, tuple[str, ...]] = {
    "char_lm": ("rnn_lm", "attention_lm"),
    "classify": ("classifier",),
    "forecast": ("sequence",),
    "word_lm": ("rnn_lm", "attention_lm"),
    "seq2seq": ("seq2seq",),
    "synthetic": ("sequence",),
}


def check_model(config):
  """Raises UserError unless config.model.name fits config.task."""
  lookup(TASKS, config.task, "task")
  fitting = TASK_MODELS[config.task]
  if config.model.name not in fitting:
    raise UserError(
        f"task={config.task!r} needs model.name="
        f"{' or '.join(map(repr, fitting))}, got {config.model.name!r}.")


def create_task(config) -> base.Task:
  check_model(config)
  return lookup(TASKS, config.task, "task")(config)
