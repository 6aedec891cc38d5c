"""experiments/forecast_window_sweep.py without training: each cell's
config, and a table that marks the cell validation chose."""
from __future__ import annotations

import pytest

from experiments import forecast_window_sweep as fws
from tests.helpers import tiny_config


def _run(val, test, naive=1.0, cpus=1):
  return {"val": {"mae": val}, "test": {"mae": test, "naive_mae": naive,
                                        "mae_ratio_arima": test / 0.5},
          "wall_seconds": 3.0, "cpus": cpus}


def test_a_cell_changes_window_loss_positions_and_width_only():
  base = tiny_config("gru_forecast_co2")
  c = fws.cell_config(base, 52, 32)
  assert (c.forecast.window, c.forecast.loss_positions,
          c.model.hidden_size) == (52, 26, 32)
  c.forecast.window = 1
  assert base.forecast.window != 1  # the base is not changed
  assert c.optim.learning_rate == base.optim.learning_rate


def test_the_table_marks_the_cell_chosen_on_validation_not_test():
  results = {(26, 8): [_run(0.30, 0.40), _run(0.32, 0.40)],
             (52, 8): [_run(0.35, 0.20), _run(0.35, 0.20)]}
  text, chosen = fws.table(results, shipped=(52, 8))
  assert chosen == (26, 8)  # lower validation MAE, worse test MAE
  lines = text.splitlines()
  assert lines[0].endswith("| Wall per run (1 core) |")
  assert lines[2].startswith("| 26 (chosen on validation) | 8 | "
                             "0.3100 ± 0.0141 | 0.4000 ± 0.0000 | "
                             "0.4000 ± 0.0000 | 0.8000 ± 0.0000 | 3 s |")
  assert lines[3].startswith("| 52 (the config's) | 8 |")


def test_bad_lists_are_refused():
  with pytest.raises(SystemExit, match=r"--windows='26,x'"):
    fws.main(["--windows=26,x", "--root=/nonexistent"])
  with pytest.raises(SystemExit, match=r"--hidden='0'"):
    fws.main(["--hidden=0", "--root=/nonexistent"])
