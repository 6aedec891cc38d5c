"""Every config under configs/ loads, validates and has a small variant."""
from __future__ import annotations

import importlib.util

import pytest

from rnnlab import base_config
from rnnlab import config_check
from tests.helpers import ROOT

CONFIGS = sorted((ROOT / "configs").glob("*.py"))


def load(path):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_the_three_cell_configs_exist():
  assert {p.stem for p in CONFIGS} >= {"rnn_shakespeare", "lstm_shakespeare",
                                       "gru_shakespeare"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_and_runlocal_variant(path):
  module = load(path)
  full, small = module.get_config(), module.get_config("runlocal")
  config_check.validate(full)
  config_check.validate(small)
  assert full.model.cell in path.stem
  assert small.train.steps * small.train.batch_size < (
      full.train.steps * full.train.batch_size / 100)
  assert set(full.keys()) == set(base_config.get_config().keys())
  # The docstring gives the command and the measured result.
  assert f"--config=configs/{path.name}" in module.__doc__
  assert "Measured" in module.__doc__ and "PLACEHOLDER" not in module.__doc__
  with pytest.raises(ValueError, match=r"Unknown config arg \['runlcoal'\]"):
    module.get_config("runlcoal")


def test_saved_config_loads_with_new_keys_defaulted():
  saved = base_config.get_config().to_dict()
  del saved["model"]["layer_schedule"]  # as if saved before the key existed
  saved["model"]["cell"] = "lstm"
  saved["retired_key"] = 1
  config = base_config.from_saved(saved)
  assert config.model.cell == "lstm"
  assert config.model.layer_schedule == base_config.get_config(
  ).model.layer_schedule
  assert "retired_key" not in config
