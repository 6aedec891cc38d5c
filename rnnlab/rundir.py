"""A run directory (workdir): its file names, and reading and writing them.

    <workdir>/config.json      the run's config (`load_config`)
             provenance.json   git commit, package versions, devices
             status.json       running | done | diverged | failed | ...
             checkpoints/      CHECKPOINT_DIR: the latest steps (Orbax)
             best/             BEST_DIR: the best evaluation's step
             model.json        MODEL_FILE: model class, sizes, devices, the
                               implementation "auto" chose
             vocab.json        VOCAB_FILE: a language model's vocabulary
             metrics.jsonl, samples.txt, events.out.*  (rnnlab.metrics)

This module sits below the trainer, so that sampling, prediction, diagnosis
and transfer read runs without importing it; tasks use it for their own
run files (e.g. the classifier's report on the best checkpoint).
"""
from __future__ import annotations

import json
import pathlib
import re
import time
from typing import Any

from absl import logging
import jax
import ml_collections

from rnnlab import base_config
from rnnlab import checkpoint
from rnnlab import metrics as metrics_lib
from rnnlab import optim
from rnnlab.errors import CheckpointError, UserError

CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"  # the best evaluation's checkpoint, kept apart from latest
MODEL_FILE = "model.json"  # model class, sizes, devices, the implementation
VOCAB_FILE = "vocab.json"  # char_lm / word_lm: what sampling decodes with


def saved_config(workdir: pathlib.Path) -> dict[str, Any]:
  """The run's config.json as a dict; CheckpointError (exit 2, one line) if
  it is missing, unreadable or not a JSON object."""
  path = pathlib.Path(workdir) / "config.json"
  if not path.exists():
    raise CheckpointError(f"No config.json in {workdir}: not an rnnlab run "
                          "directory (train there first).")
  try:
    saved = metrics_lib.read_json(path)
  except (OSError, UnicodeDecodeError, ValueError) as e:
    raise CheckpointError(
        f"{path} is not readable JSON ({type(e).__name__}: {e}); restore it "
        "from a backup, or pass the run's config with --config.") from None
  if not isinstance(saved, dict):
    raise CheckpointError(f"{path} must hold a JSON object (the run's "
                          f"config), not {type(saved).__name__}.")
  return saved


def load_config(workdir: pathlib.Path) -> ml_collections.ConfigDict:
  """The run's saved config on today's defaults, checked against the schema
  (`base_config.validate`: types, sizes, rates). Registered names are
  checked where they are looked up; `config_check.validate` checks them
  all at once (the trainer's --mode=eval does)."""
  config = base_config.from_saved(saved_config(workdir))
  base_config.validate(config)
  return config


def load_task_run(workdir: pathlib.Path, task: str, purpose: str,
                  metadata_file: str, config=None
                  ) -> tuple[ml_collections.ConfigDict, dict[str, Any]]:
  """(config, metadata) of a trained `task` run, for `purpose` (e.g.
  "forecasting"): its config.json (or `config`), refused unless it is a
  `task` run, and the JSON file `metadata_file` the task saved there."""
  workdir = pathlib.Path(workdir)
  config = config or load_config(workdir)
  if config.task != task:
    raise UserError(f"{workdir} is a task={config.task!r} run; {purpose} "
                    f"needs task={task!r}.")
  path = workdir / metadata_file
  if not path.exists():
    raise CheckpointError(f"No {metadata_file} in {workdir}.")
  return config, metrics_lib.read_json(path)


def restore_params(model, init_inputs, workdir: pathlib.Path
                   ) -> tuple[int, Any]:
  """(step, params) of the newest checkpoint in `workdir`, the weights as
  the run evaluated them (optim.ema_decay: their average); `init_inputs`
  are example inputs of `model.init`, for the parameter shapes."""
  ckpt_dir = pathlib.Path(workdir) / CHECKPOINT_DIR
  if not ckpt_dir.is_dir():
    raise CheckpointError(f"No checkpoint in {workdir} (expected "
                          f"{ckpt_dir}).")
  template = jax.eval_shape(
      lambda key: model.init(key, *init_inputs), jax.random.key(0))["params"]
  ckpt = checkpoint.Checkpointer(ckpt_dir, read_only=True)
  saved = (pathlib.Path(workdir) / "config.json").exists()
  optim_config = load_config(workdir).optim if saved else None
  if not optim_config or not optim_config.ema_decay:
    return ckpt.restore_params(template)
  # The weights the run evaluated: the average in its optimizer state.
  # Only the state's shapes matter here, so the schedule's length does not.
  tx = optim.create_optimizer(optim_config, total_steps=1, steps_per_epoch=1)
  step, params, opt_state, _, _ = ckpt.restore(
      template, jax.eval_shape(tx.init, template))
  return step, optim.evaluation_params(params, opt_state)


CHECKPOINT_CHOICES = ("best", "latest")


def wait_for_saves(directory: pathlib.Path, timeout_s: float = 60.0):
  """Waits while an Orbax save into `directory` is in flight: the trainer
  writes reports before it closes its checkpoint managers, so the newest
  best step may still be in a temporary directory."""
  deadline = time.monotonic() + timeout_s
  while any(".orbax-checkpoint-tmp" in p.name for p in directory.iterdir()):
    if time.monotonic() > deadline:
      logging.warning("A save into %s is still unfinished after %.0f s; "
                      "reading its newest finished step.", directory,
                      timeout_s)
      return
    time.sleep(0.2)


def check_checkpoint_choice(checkpoint_name: str) -> None:
  if checkpoint_name not in CHECKPOINT_CHOICES:
    raise UserError(f"Unknown checkpoint {checkpoint_name!r}. Valid "
                    f"choices: {', '.join(map(repr, CHECKPOINT_CHOICES))}.")


def restore_chosen_params(model, init_inputs, workdir: pathlib.Path,
                          checkpoint_name: str = "best"
                          ) -> tuple[int, Any, str]:
  """(step, params, checkpoint name) for inference: the best checkpoint
  (chosen on validation; the newest if the run has none yet) or, with
  `checkpoint_name` "latest", the newest."""
  check_checkpoint_choice(checkpoint_name)
  if checkpoint_name == "best" and (pathlib.Path(workdir) / BEST_DIR).is_dir():
    step, params = restore_best_params(model, init_inputs, workdir)
    return step, params, "best"
  step, params = restore_params(model, init_inputs, workdir)
  return int(step), params, "latest"


def restore_best_params(model, init_inputs, workdir: pathlib.Path
                        ) -> tuple[int, Any]:
  """(step, params) of <workdir>/best/, the checkpoint chosen on
  validation (as evaluated: the weight average if the run keeps one);
  CheckpointError if it has none that restores."""
  best = pathlib.Path(workdir) / BEST_DIR
  if not best.is_dir():
    raise CheckpointError(f"No best checkpoint in {workdir} (expected "
                          f"{best}).")
  wait_for_saves(best)
  template = jax.eval_shape(lambda key: model.init(key, *init_inputs),
                            jax.random.key(0))["params"]
  step, params = checkpoint.Checkpointer(best, read_only=True).restore_params(
      template)
  return int(step), params


def prepare_workdir(workdir: pathlib.Path, config) -> None:
  """Checks that `workdir` is writable and, if it holds a run, that the run
  is this config's; then writes config.json and provenance.json."""
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    probe = workdir / f".write_test{jax.process_index()}"
    probe.write_text("ok")
    probe.unlink()
  except OSError as e:
    raise UserError(f"Cannot write to workdir {workdir}: {e}") from None
  ckpt_dir = workdir / CHECKPOINT_DIR
  if (workdir / "config.json").exists() and ckpt_dir.is_dir() and any(
      p.name.isdigit() for p in ckpt_dir.iterdir()):
    # A resume: overwriting config.json with another experiment's would
    # silently continue that run under a new name.
    conflicts = base_config.resume_conflicts(saved_config(workdir), config)
    if conflicts:
      raise UserError(
          f"{workdir} holds a run with a different config: "
          f"{'; '.join(conflicts)}. Resume it with its own config (only "
          "rnnlab.base_config.RESUMABLE_KEYS, e.g. train.steps, may change), "
          "or train in another --workdir.")
  if jax.process_index() == 0:
    metrics_lib.write_json(workdir / "config.json", json.loads(
        config.to_json_best_effort()))
    metrics_lib.write_json(workdir / "provenance.json",
                           metrics_lib.provenance())


def set_status(workdir: pathlib.Path, status: str, **fields):
  """status.json: {"status": status, **fields}, from process 0."""
  if jax.process_index() == 0:
    metrics_lib.write_json(workdir / "status.json",
                           {"status": status, **fields})


def append_sample(workdir: pathlib.Path, step: int, text: str):
  """Appends a section "=== step N ===" to samples.txt (process 0 only
  calls it), the form `forget_after` reads back."""
  with (workdir / "samples.txt").open("a", encoding="utf-8") as f:
    f.write(f"=== step {step} ===\n{text}\n\n")


def forget_after(step: int, workdir: pathlib.Path, best_ckpt) -> None:
  """Drops what an interrupted run recorded after `step`, the step this run
  starts from: it replays those steps, and an uninterrupted run has one
  record of each.

  Best checkpoints (`best_ckpt`, the Checkpointer of BEST_DIR) newer than
  `step` come from the lost stretch: kept, they would not match the best
  step in the resumed checkpoint's metadata, and a resume with a changed
  config would keep a best from another trajectory. metrics.jsonl loses its
  records after `step` and any line a kill cut off, samples.txt its samples
  after `step` (TensorBoard: MetricWriter's purge_step).
  """
  for stale in [s for s in best_ckpt.manager.all_steps() if s > step]:
    logging.info("Deleting best checkpoint %d: newer than step %d, where "
                 "this run starts.", stale, step)
    best_ckpt.manager.delete(stale)
  if jax.process_index() != 0:
    return
  path = workdir / "metrics.jsonl"
  if path.exists():
    content = path.read_text()
    lines, kept = content.splitlines(), []
    for line in lines:
      try:
        if json.loads(line)["step"] <= step:
          kept.append(line)
      except (ValueError, KeyError, TypeError):
        pass  # cut off by a kill mid-write
    if len(kept) < len(lines) or not content.endswith("\n"):
      metrics_lib.write_text(path, "".join(line + "\n" for line in kept))
  samples = workdir / "samples.txt"
  if samples.exists():
    # Sections "=== step N ===\n<text>\n\n", as `append_sample` writes them.
    content = samples.read_text(encoding="utf-8")
    parts = re.split(r"(?m)^(?==== step \d+ ===$)", content)
    kept = [s for s in parts
            if not (m := re.match(r"=== step (\d+)", s)) or
            int(m.group(1)) <= step]
    if "".join(kept) != content:
      metrics_lib.write_text(samples, "".join(kept))
