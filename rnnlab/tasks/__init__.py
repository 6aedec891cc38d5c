"""Task registry: `config.task` -> Task class.

A task owns its data and its config section, builds its model, and defines
the training loss and the evaluation metrics; `rnnlab.train` runs any task
the same way. To add one, subclass `base.Task` (its `models`, its
`check_config` and its methods) and register it here or from a module
named in `config.imports`.
"""
from __future__ import annotations

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


def create_task(config) -> base.Task:
  """The task of a config that `rnnlab.config_check.validate` passed."""
  return lookup(TASKS, config.task, "task")(config)
