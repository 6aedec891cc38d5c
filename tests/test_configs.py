"""Every config under configs/ loads, validates and has a small variant."""
from __future__ import annotations

import importlib.util

import pytest

from rnnlab import base_config
from rnnlab import config_check
from rnnlab.errors import UserError
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


@pytest.mark.parametrize(
    "path", [p for p in CONFIGS if hasattr(load(p), "get_search")],
    ids=lambda p: p.stem)
def test_search_spaces_name_config_keys(path):
  from rnnlab import search  # pylint: disable=g-import-not-at-top
  module = load(path)
  for arg in ("", "runlocal"):
    assert search.check_space(module.get_search(arg))  # keys and ranges


def test_20min_search_stages_train_the_same_budget_within_a_stage():
  module = load(ROOT / "configs" / "gru_shakespeare_20min.py")
  budget, screen, refine = (module.get_config(a)
                            for a in ("narrow", "screen", "refine"))
  assert budget.train.steps == refine.train.steps == module.BUDGET_STEPS
  assert screen.train.steps == module.SCREEN_STEPS < module.BUDGET_STEPS
  for stage in (budget, screen, refine):  # the search ran at 2 x 256
    assert (stage.model.hidden_size, stage.model.num_layers) == (256, 2)
  # The default trains stage 3's best shape for the budget's time on the
  # slower of the two measured code paths; "wide" names the same config.
  wide = module.get_config()
  assert list(base_config.leaves(wide)) == list(base_config.leaves(
      module.get_config("wide")))
  assert (wide.model.hidden_size, wide.model.num_layers) == (
      module.WIDE_HIDDEN, module.WIDE_LAYERS) != (
          budget.model.hidden_size, budget.model.num_layers)
  assert wide.train.steps == min(
      module.arch_steps(module.WIDE_HIDDEN, module.WIDE_LAYERS, ms)
      for ms in (module.ARCH_STEP_MS, module.ARCH_STEP_MS_AVX2))
  assert wide.train.steps < module.BUDGET_STEPS
  assert wide.train.eval_every == wide.train.steps // 4
  # Apart from the shape and its steps, "narrow" is the winner's recipe.
  differ = {k for k, v in base_config.leaves(budget)
            if dict(base_config.leaves(wide))[k] != v}
  assert differ == {"model.hidden_size", "train.steps", "train.eval_every",
                    "train.checkpoint_every"}
  with pytest.raises(UserError, match="'narrow'.*'wide'"):
    module.get_config("narrow,wide")
  # Stage 2 fixes what stage 1 settled and searches a narrower space.
  assert refine.train.order == "stateful"
  assert refine.train.max_seconds == 0  # trials never stop short
  stage1, stage2 = module.get_search("screen"), module.get_search("refine")
  assert set(stage2) < set(stage1)
  assert stage2["model.dropout_rate"].low >= 0.1


def test_20min_arch_stage_trains_each_shape_for_the_budgets_time():
  module = load(ROOT / "configs" / "gru_shakespeare_20min.py")
  winner, arch = module.get_config("narrow"), module.get_config("arch")
  # Stage 3 is stage 2's winner's recipe; only what every trial turns off
  # differs (each trial sets its shape and steps).
  differ = {k for k, v in base_config.leaves(arch)
            if dict(base_config.leaves(winner))[k] != v}
  assert differ == {"train.sample_every", "train.max_seconds",
                    "train.patience"}
  trials = module.get_sweep("arch")
  shapes = {(t["model.hidden_size"], t["model.num_layers"]) for t in trials}
  assert (256, 2) not in shapes and {(384, 2), (256, 3)} <= shapes
  base_ms = module.ARCH_STEP_MS[256, 2]
  for t in trials:
    ms = module.ARCH_STEP_MS[t["model.hidden_size"], t["model.num_layers"]]
    budget_ms = module.BUDGET_STEPS * base_ms
    assert abs(t["train.steps"] * ms - budget_ms) <= 10 * ms  # rounded to 20
    assert t["train.eval_every"] == t["train.checkpoint_every"] == (
        t["train.steps"] // 4)
  with pytest.raises(UserError, match="'arch'"):
    module.get_sweep("")
