"""docs/extending.md's cell, as a researcher would add it: the doc's code in
a module of their own, registered through config.imports, trained under
every model.implementation. Each one trains (the loss falls) or refuses
with one line naming the implementations that can run the cell."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from rnnlab import base_config
from rnnlab import implementation_choice
from rnnlab import registry
from rnnlab import train
from rnnlab.errors import UserError
from rnnlab.models import cells
from rnnlab.models import layers
from rnnlab.native import build
from tests.helpers import ROOT, tiny_lm_config

# A cell in the general form: a matmul after its gate (on U_t ∘ H_{t-1}),
# so there is no fused form.
GENERAL_CELL = '''
import jax
import jax.numpy as jnp

from rnnlab.models import cells


class ResetGatedCell(cells.RecurrentCell):
  """U_t = σ(W_xu x_t + W_hu H_{t-1} + b_u)
  C̃_t = tanh(W_xc x_t + W_hc (U_t ∘ H_{t-1}) + b_c)
  H_t = (1 - U_t) ∘ H_{t-1} + U_t ∘ C̃_t"""

  num_gates = 2
  gate_names = ("u", "c")

  def num_hidden_blocks(self):
    return 1  # hidden_proj: u; the candidate has its own

  def setup(self):
    super().setup()
    self.candidate_proj = self._hidden_dense(1)

  def recurrence(self, h, xp, hidden_mask=None):
    xu, xc = jnp.split(xp, 2, axis=-1)
    dropped = h if hidden_mask is None else h * hidden_mask
    u = jax.nn.sigmoid((xu + self.hidden_proj(dropped)).astype(jnp.float32))
    c = jnp.tanh((xc + self.candidate_proj(u * dropped)).astype(jnp.float32))
    h = (1.0 - u) * h + u * c
    return h, h


cells.CELLS["reset_gated"] = ResetGatedCell
'''

# What each cell runs: the others are refused.
RUNS = {"mgu": ("auto", "scan", "fused"), "reset_gated": ("auto", "scan")}
IMPLEMENTATIONS = ("auto", "scan", "fused", "native", "cudnn")


def doc_cell_source() -> str:
  """The ```python block after `<!-- test: cell -->` in docs/extending.md."""
  doc = (ROOT / "docs" / "extending.md").read_text()
  match = re.search(r"<!-- test: cell -->\s*```python\n(.*?)```", doc, re.S)
  assert match, "docs/extending.md lost its marked cell example"
  return match.group(1)


@pytest.fixture(name="modules")
def fixture_modules(tmp_path, monkeypatch):
  """Both cells' modules in tmp_path, {cell name: file}; the registries and
  the record of imports are restored afterwards."""
  files = {"mgu": tmp_path / "mylab_cells.py",
           "reset_gated": tmp_path / "general_cells.py"}
  files["mgu"].write_text(doc_cell_source())
  files["reset_gated"].write_text(textwrap.dedent(GENERAL_CELL))
  saved = dict(cells.CELLS)
  monkeypatch.setattr(registry, "_IMPORTED", set())
  yield files
  cells.CELLS.clear()
  cells.CELLS.update(saved)


def train_losses(workdir) -> list[float]:
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [r["loss"] for r in map(json.loads, lines) if r["split"] == "train"]


def assert_trained(workdir, implementation: str):
  losses = train_losses(workdir)
  assert len(losses) >= 2 and losses[-1] < losses[0] - 0.1, losses
  record = json.loads((workdir / "model.json").read_text())["implementation"]
  assert record["requested"] == implementation
  assert record["choice"] in RUNS[_cell_of(workdir)]
  return record


def _cell_of(workdir) -> str:
  return json.loads((workdir / "config.json").read_text())["model"]["cell"]


@pytest.mark.parametrize("cell", sorted(RUNS))
def test_user_cells_train_or_refuse_under_every_implementation(
    cell, modules, tmp_path, corpus_path):
  """In process, through train_and_evaluate as main.py calls it."""
  del corpus_path
  for implementation in IMPLEMENTATIONS:
    workdir = tmp_path / implementation
    config = tiny_lm_config(cell, imports=(str(modules[cell]),),
                            model__implementation=implementation)
    if implementation in RUNS[cell]:
      train.train_and_evaluate(config, workdir)
      assert_trained(workdir, implementation)
      continue
    with pytest.raises(UserError) as refusal:
      train.train_and_evaluate(config, workdir)
    message = str(refusal.value)
    assert "\n" not in message
    assert message.startswith(
        f"model.implementation={implementation!r} cannot run the {cell!r} "
        f"cell")
    assert message.endswith(
        f"Implementations that can: {', '.join(map(repr, RUNS[cell]))}.")


def test_auto_times_only_what_the_cell_can_run(modules):
  """Candidates that cannot run a cell are left out: the general cell has
  one (nothing to time), the doc's cell the XLA kernels."""
  for cell, runs in RUNS.items():
    registry.import_modules([str(modules[cell])])
    model = tiny_lm_config(cell).model
    candidates = implementation_choice.implementation_candidates(
        layers.cell_from_config(model))
    assert candidates and set(candidates) <= set(runs)
  assert implementation_choice.implementation_candidates(
      layers.cell_from_config(tiny_lm_config("mgu").model)) == [
          "fused", "scan"]


def test_a_saved_run_imports_its_cells_again(modules):
  """Evaluation, sampling and resuming load a run's config.json
  (`base_config.from_saved`): its imports run again in a process that has
  not imported them."""
  config = tiny_lm_config("reset_gated",
                          imports=(str(modules["reset_gated"]),))
  saved = json.loads(config.to_json_best_effort())  # as in config.json
  assert "reset_gated" not in cells.CELLS
  assert base_config.from_saved(saved).model.cell in cells.CELLS


def test_a_module_that_fails_to_import_is_one_line(tmp_path, monkeypatch):
  monkeypatch.setattr(registry, "_IMPORTED", set())
  broken = tmp_path / "broken.py"
  broken.write_text("import numpy\nraise RuntimeError('no GPU\\nhere')\n")
  with pytest.raises(UserError, match=(
      r"^config.imports: importing '.*broken.py' failed: RuntimeError: no "
      r"GPU here$")):
    registry.import_modules([str(broken)])
  with pytest.raises(UserError, match=r"'no_such_lab' failed: "
                     r"ModuleNotFoundError"):
    registry.import_modules(["no_such_lab"])
  with pytest.raises(UserError, match=r"'missing.py' is not a file"):
    registry.import_modules(["missing.py"])


def _main(tmp_path, *flags, env=None):
  return subprocess.run(
      [sys.executable, "-m", "rnnlab.main",
       "--config=configs/gru_shakespeare.py:runlocal",
       "--config.train.steps=30", "--config.optim.learning_rate=0.01",
       *flags],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env={**os.environ, "PYTHONPATH": os.pathsep.join(
          [str(tmp_path), str(ROOT)]), **(env or {})})


def test_the_documented_command_trains_the_doc_cell(modules, tmp_path):
  """`--config.imports=<module on PYTHONPATH>` from the command line, under
  "auto" with timing on: it times only what can run the cell, and
  model.json records the choice."""
  del modules  # the files only: this process imports nothing
  cache = tmp_path / "native-cache"  # this machine's libraries, no choices
  cache.mkdir(mode=0o700)
  for library in build.cache_dir().glob("*.so"):
    shutil.copy2(library, cache / library.name)
  workdir = tmp_path / "run"
  proc = _main(tmp_path, "--config.imports=mylab_cells",
               "--config.model.cell=mgu", f"--workdir={workdir}",
               env={"RNNLAB_AUTOTUNE": "1", "RNNLAB_NATIVE_CACHE": str(cache)})
  assert proc.returncode == 0, proc.stderr[-3000:]
  record = assert_trained(workdir, "auto")
  assert record["source"] == "timed" and record["choice"] in ("fused", "scan")
  assert set(record["seconds"]) <= {"fused", "scan"}
  # The refusal, as the command line shows it: exit 2 and one line.
  proc = _main(tmp_path, "--config.imports=mylab_cells",
               "--config.model.cell=mgu", "--config.model.implementation="
               "native", f"--workdir={tmp_path / 'native'}")
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert proc.stderr.strip().splitlines()[-1] == (
      "error: model.implementation='native' cannot run the 'mgu' cell "
      "(MinimalGatedCell: no native kernel has its gates). Implementations "
      "that can: 'auto', 'scan', 'fused'.")
