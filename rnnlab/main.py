"""Entry point: train (and evaluate) a config, or evaluate a trained run.

  python -m rnnlab.main --config=configs/gru_shakespeare.py --workdir=runs/gru
  python -m rnnlab.main --mode=eval --workdir=runs/gru

Any config key can be overridden: --config.train.steps=100. Configs are
Python files and are executed: only run configs you trust.

Exit status: 0 done; 2 bad input (one-line message); 3 training diverged;
143 preempted: SIGTERM made the run save a checkpoint at its current step and
stop (<workdir>/status.json says "preempted"); the same command resumes it,
so a scheduler can requeue on 143. A SIGKILL loses only the steps since the
newest checkpoint; rerunning resumes from it. Anything else is a bug.
"""
from __future__ import annotations

import json

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from rnnlab import cli
from rnnlab import train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (get_config(arg)); optional for --mode=eval,"
    " which then uses the run's config.json.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.",
                               required=True)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0, for multi-process "
    "runs; unset = detect SLURM / TPU VM, or run as a single process.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "Processes in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None,
                                   "This process's index, 0-based.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval"],
                          "train: train_and_evaluate (resumes if the workdir "
                          "has a checkpoint); eval: metrics of the newest "
                          "checkpoint without training.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  cli.setup()
  cli.init_distributed(_COORDINATOR.value, _NUM_PROCESSES.value,
                       _PROCESS_ID.value)
  logging.info("JAX %s on %s: %s", jax.__version__, jax.default_backend(),
               jax.devices())
  if _MODE.value == "eval":
    results = train.evaluate_checkpoint(_CONFIG.value, _WORKDIR.value)
  else:
    if _CONFIG.value is None:
      raise app.UsageError("--config is required for --mode=train.")
    results = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  print(json.dumps(results, indent=2))


def run():
  app.run(cli.friendly_errors(main), flags_parser=cli.parse_flags)


if __name__ == "__main__":
  run()
