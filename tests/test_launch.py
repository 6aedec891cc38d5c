"""launch.sh: local runs a tiny config, slurm --dry-run prints the sbatch
script, tpu-vm --dry-run the gcloud command, unknown modes give usage."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from rnnlab import cli
from rnnlab.errors import UserError
from tests.conftest import ROOT

LAUNCH = str(ROOT / "launch.sh")


def _launch(*args, **kwargs):
  return subprocess.run([LAUNCH, *args], capture_output=True, text=True,
                        cwd=ROOT, env={**os.environ}, **kwargs)


def test_slurm_dry_run_prints_the_sbatch_script():
  out = _launch("slurm", "--nodes=2", "--gpus_per_node=4", "--partition=gpu",
                "--time=01:00:00", "--dry-run", "--",
                "--config=configs/gru_shakespeare.py", "--workdir=runs/x",
                "--config.train.steps=10")
  assert out.returncode == 0, out.stderr
  lines = out.stdout.splitlines()
  assert lines[0] == "#!/usr/bin/env bash"
  for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1",
               "#SBATCH --gpus-per-node=4", "#SBATCH --partition=gpu",
               "#SBATCH --time=01:00:00",
               "#SBATCH --output=runs/x/slurm/%x-%j.out"):
    assert line in lines
  srun = [l for l in lines if l.startswith("srun ")]
  assert len(srun) == 1 and "-m rnnlab.main" in srun[0]
  assert "--config.train.steps=10" in srun[0]


def test_tpu_vm_dry_run_runs_on_all_workers():
  out = _launch("tpu-vm", "--tpu=my-tpu", "--zone=us-central2-b",
                "--dry-run", "--", "--config=configs/gru_shakespeare.py",
                "--workdir=runs/x")
  assert out.returncode == 0, out.stderr
  assert out.stdout.startswith("gcloud compute tpus tpu-vm ssh my-tpu")
  assert "--worker=all" in out.stdout and "rnnlab.main" in out.stdout
  missing = _launch("tpu-vm", "--dry-run", "--", "--workdir=x")
  assert missing.returncode == 2 and "--tpu=NAME" in missing.stderr


def test_unknown_mode_and_option_give_usage():
  out = _launch("kubernetes")
  assert out.returncode == 2
  assert "unknown mode 'kubernetes'. Valid modes: local, slurm, tpu-vm" in (
      out.stderr)
  assert "slurm" in out.stderr and "--dry-run" in out.stderr  # the usage
  bad = _launch("slurm", "--nodez=2", "--", "--workdir=x")
  assert bad.returncode == 2 and "unknown option --nodez=2" in bad.stderr


def test_local_mode_trains_a_tiny_config(tmp_path):
  out = _launch("local", "--config=configs/rnn_shakespeare.py:runlocal",
                f"--workdir={tmp_path}", "--config.train.steps=4",
                "--config.train.eval_every=4",
                "--config.train.checkpoint_every=4",
                "--config.train.sample_every=0", timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  status = json.loads((tmp_path / "status.json").read_text())
  assert status["status"] == "done" and status["step"] == 4


def test_distributed_flags_go_together(monkeypatch):
  monkeypatch.delenv("SLURM_NTASKS", raising=False)
  monkeypatch.delenv("TPU_WORKER_HOSTNAMES", raising=False)
  assert cli.init_distributed() is False  # a single process: no runtime
  with pytest.raises(UserError, match="go together"):
    cli.init_distributed("127.0.0.1:1234", None, 0)
