"""Entry point: train (and evaluate) a config, or evaluate a trained run.

  python -m rnnlab.main --config=configs/gru_shakespeare.py --workdir=runs/gru
  python -m rnnlab.main --mode=eval --workdir=runs/gru

Without --workdir a run goes to runs/<config file stem>[_<arg>][_<hash of
the --config.* overrides>] (cli.default_workdir), printed at the start; the
same command resumes it. Resuming a workdir with a config that differs in
more than base_config.RESUMABLE_KEYS (e.g. train.steps) is refused.

Any config key can be overridden: --config.train.steps=100. Configs are
Python files and are executed: only run configs you trust.

Exit status: 0 done; 2 bad input (one-line message); 3 training diverged;
75 a checkpoint could not be read (I/O error, stale NFS handle, permission,
out of memory; retried first): one line names the path and the error,
nothing was moved or deleted and the same command resumes once the file
system recovers, so a scheduler can requeue on 75 (EX_TEMPFAIL);
143 preempted: SIGTERM made the run save a checkpoint at its current step and
stop (<workdir>/status.json says "preempted"); the same command resumes it,
so a scheduler can requeue on 143. A SIGKILL loses only the steps since the
newest checkpoint; rerunning resumes from it. Anything else is a bug.
"""
from __future__ import annotations

import json
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from rnnlab import cli
from rnnlab import distributed
from rnnlab import train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (get_config(arg)); optional for --mode=eval,"
    " which then uses the run's config.json.", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run directory; default runs/<config stem>[_<arg>]"
    "[_<overrides hash>] (rerunning the same command resumes).")
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
  distributed.init_distributed(_COORDINATOR.value, _NUM_PROCESSES.value,
                       _PROCESS_ID.value)
  logging.info("JAX %s on %s: %s", jax.__version__, jax.default_backend(),
               jax.devices())
  if _MODE.value == "train" and _CONFIG.value is None:
    raise app.UsageError("--config is required for --mode=train.")
  workdir = _WORKDIR.value
  if workdir is None:
    if _CONFIG.value is None:
      raise app.UsageError("--mode=eval needs --workdir (or the --config "
                           "that named the run's default workdir).")
    flag = flags.FLAGS["config"]
    workdir = cli.default_workdir(config_flags.get_config_filename(flag),
                                  config_flags.get_override_values(flag))
    if jax.process_index() == 0:
      sys.stderr.write(f"workdir: {workdir} (the same command resumes it)\n")
  if _MODE.value == "eval":
    results = train.evaluate_checkpoint(_CONFIG.value, workdir)
  else:
    results = train.train_and_evaluate(_CONFIG.value, workdir)
  print(json.dumps(results, indent=2))


def run():
  app.run(cli.friendly_errors(main), flags_parser=cli.parse_flags)


if __name__ == "__main__":
  run()
