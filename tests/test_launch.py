"""launch.sh: local runs a tiny config, slurm --dry-run prints the sbatch
script, slurm-sweep the job array over pending trials, tpu-vm --dry-run the
gcloud command, unknown modes give usage."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from rnnlab import distributed
from rnnlab.errors import UserError
from tests.helpers import ROOT
from tests.helpers import tiny_sweep

LAUNCH = str(ROOT / "launch.sh")


def _launch(*args, env=None, **kwargs):
  return subprocess.run([LAUNCH, *args], capture_output=True, text=True,
                        cwd=ROOT, env=env or {**os.environ}, **kwargs)


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
  # Relative paths resolve where launch.sh ran; the repo is importable.
  assert f"cd {ROOT}" in lines
  assert any(l.startswith("export PYTHONPATH=") and " " not in l[7:]
             for l in lines)
  srun = [l for l in lines if l.startswith("srun ")]
  assert len(srun) == 2 and "-m rnnlab.main" in srun[1]
  assert "--config.train.steps=10" in srun[1]
  # First the native kernels, once per node; on several nodes without the
  # config (the run times its sharded step itself).
  assert srun[0].startswith("srun --ntasks-per-node=1 ")
  assert srun[0].rstrip().endswith("-m rnnlab.native build")
  one_node = _launch("slurm", "--dry-run", "--",
                     "--config=configs/gru_shakespeare.py", "--workdir=runs/x",
                     "--config.train.steps=10").stdout.splitlines()
  build = [l for l in one_node if "rnnlab.native build" in l]
  assert build[0].rstrip().endswith(
      "build --config=configs/gru_shakespeare.py --config.train.steps=10")


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
  assert ("unknown mode 'kubernetes'. Valid modes: local, slurm, slurm-sweep,"
          " tpu-vm") in (
      out.stderr)
  assert "slurm" in out.stderr and "--dry-run" in out.stderr  # the usage
  bad = _launch("slurm", "--nodez=2", "--", "--workdir=x")
  assert bad.returncode == 2 and "unknown option --nodez=2" in bad.stderr
  # Options are per mode: slurm's --nodes is not slurm-sweep's.
  bad = _launch("slurm-sweep", "--nodes=2", "--", "--root=x")
  assert bad.returncode == 2 and "unknown option --nodes=2" in bad.stderr
  assert "slurm-sweep [--parallel=4]" in bad.stderr  # the usage
  # The whole header is the usage, down to its last line.
  help_ = _launch("--help")  # asked for: not an error
  assert help_.returncode == 0
  assert "PYTHON picks the interpreter" in help_.stderr


def test_local_mode_trains_a_tiny_config(tmp_path):
  out = _launch("local", "--config=configs/rnn_shakespeare.py:runlocal",
                f"--workdir={tmp_path}", "--config.train.steps=4",
                "--config.train.eval_every=4",
                "--config.train.checkpoint_every=4",
                "--config.train.sample_every=0", timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  status = json.loads((tmp_path / "status.json").read_text())
  assert status["status"] == "done" and status["step"] == 4
  # `rnnlab.native build` ran first, for this config with its overrides.
  assert "configs/rnn_shakespeare.py:runlocal: implementation=auto runs" in (
      out.stdout)


def test_distributed_flags_go_together(monkeypatch):
  monkeypatch.delenv("SLURM_NTASKS", raising=False)
  monkeypatch.delenv("TPU_WORKER_HOSTNAMES", raising=False)
  assert distributed.init_distributed() is False  # a single process: no runtime
  with pytest.raises(UserError, match="go together"):
    distributed.init_distributed("127.0.0.1:1234", None, 0)


def test_slurm_sweep_arrays_only_pending_trials(tmp_path):
  config, root = tiny_sweep(tmp_path)
  done = root / "cell=rnn,learning_rate=0.01"  # trial 0
  done.mkdir(parents=True)
  (done / "status.json").write_text(json.dumps({"status": "done"}))
  sweep_args = ["--", f"--config={config}", f"--root={root}",
                "--config.train.steps=4"]
  out = _launch("slurm-sweep", "--parallel=2", "--gpus_per_node=2",
                "--time=01:00:00", "--job_name=tiny", "--dry-run", *sweep_args)
  assert out.returncode == 0, out.stderr
  lines = out.stdout.splitlines()
  for line in ("#SBATCH --job-name=tiny", "#SBATCH --array=1-3%2",
               "#SBATCH --nodes=1", "#SBATCH --ntasks=1",
               "#SBATCH --gpus-per-node=2", "#SBATCH --time=01:00:00",
               f"#SBATCH --output={root}/slurm/%x-%A_%a.out"):
    assert line in lines
  trial = [l for l in lines if "--trial=" in l]
  assert len(trial) == 1 and "-m rnnlab.sweep" in trial[0]
  assert f"--config={config} --root={root} --config.train.steps=4" in trial[0]
  assert trial[0].endswith('--trial="${SLURM_ARRAY_TASK_ID:?not a SLURM '
                           'array task}"')
  assert lines[-1].endswith("--config.train.steps=4 --report_only")
  assert json.loads((root / "trials.json").read_text())["trials"]["0"][
      "name"] == done.name  # what the indices refer to
  assert not (root / "slurm").exists()  # a dry run submits nothing
  # The script as an array task: task 0 is done, so it is skipped (no
  # training); outside an array it refuses to guess an index.
  script = tmp_path / "tiny.sbatch"
  script.write_text(out.stdout)
  env = {**os.environ, "SLURM_ARRAY_TASK_ID": "0"}
  task = subprocess.run(["bash", str(script)], capture_output=True,
                        text=True, cwd=tmp_path, env=env)
  assert task.returncode == 0, task.stderr
  assert "cell=rnn,learning_rate=0.01: done before, skipped" in task.stdout
  del env["SLURM_ARRAY_TASK_ID"]
  task = subprocess.run(["bash", str(script)], capture_output=True,
                        text=True, cwd=tmp_path, env=env)
  assert task.returncode != 0 and "not a SLURM array task" in task.stderr
  # Submitting writes <root>/slurm/<job>.sbatch and hands it to sbatch (a
  # stand-in here that records its argument).
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  (bin_dir / "sbatch").write_text(
      f'#!/bin/sh\necho "$1" >> {tmp_path}/submitted\n'
      'echo "Submitted batch job 42"\n')
  (bin_dir / "sbatch").chmod(0o755)
  path_env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
  sub = _launch("slurm-sweep", "--parallel=2", "--job_name=tiny",
                *sweep_args, env={**os.environ, **path_env})
  assert sub.returncode == 0, sub.stderr
  assert "Submitted batch job 42" in sub.stdout
  sbatch_file = root / "slurm" / "tiny.sbatch"
  assert (tmp_path / "submitted").read_text() == f"{sbatch_file}\n"
  assert "#SBATCH --array=1-3%2" in sbatch_file.read_text().splitlines()
  # With every trial done there is nothing to submit, and that is no error.
  for name in json.loads((root / "trials.json").read_text())["trials"].values():
    (root / name["name"]).mkdir(exist_ok=True)
    (root / name["name"] / "status.json").write_text('{"status": "done"}')
  again = _launch("slurm-sweep", *sweep_args, env={**os.environ, **path_env})
  assert again.returncode == 0, again.stderr
  assert "no pending trials" in again.stdout
  assert (tmp_path / "submitted").read_text().count("\n") == 1  # no resubmit


# What launch.sh writes into #SBATCH lines, each with a valid value:
# (mode, option, value). workdir and root are entry-point flags after --.
_SBATCH_VALUES = [
    ("slurm", "job_name", "rnnlab"), ("slurm", "partition", "gpu"),
    ("slurm", "time", "01:00:00"), ("slurm", "nodes", "2"),
    ("slurm", "gpus_per_node", "4"), ("slurm", "workdir", "runs/x"),
    ("slurm-sweep", "job_name", "rnnlab"), ("slurm-sweep", "root", "runs/x"),
]


@pytest.mark.parametrize("bad", ["\n", ";", "$", "`"],
                         ids=["newline", "semicolon", "dollar", "backquote"])
@pytest.mark.parametrize("mode,option,good", _SBATCH_VALUES)
def test_sbatch_values_with_shell_characters_are_refused(mode, option, good,
                                                         bad, tmp_path):
  # Before: printed (and submitted) the script; a newline ended the #SBATCH
  # line, the rest ran as a shell line and sbatch ignored later #SBATCH lines.
  value = f"{good}{bad}touch {tmp_path}/injected"
  main = {"slurm": ["--config=configs/gru_shakespeare.py", "--workdir=runs/x"],
          # No such config: nothing before the check may run the sweep.
          "slurm-sweep": [f"--config={tmp_path}/none.py", "--root=runs/x"]}
  main = [a for a in main[mode] if not a.startswith(f"--{option}=")]
  if option in ("workdir", "root"):
    args = ["--dry-run", "--", *main, f"--{option}={value}"]
  else:
    args = [f"--{option}={value}", "--dry-run", "--", *main]
  out = _launch(mode, *args)
  assert (out.returncode, out.stdout) == (2, ""), out.stdout
  lines = out.stderr.splitlines()
  assert len(lines) == 1, out.stderr
  assert lines[0].startswith(f"launch.sh {mode}: invalid --{option}=")
  assert good in lines[0]
  assert "; allowed: " in lines[0]
  if bad == "\n":
    assert "\\n" in lines[0]  # escaped, as printf %q writes it
  assert not (tmp_path / "injected").exists()


def test_sbatch_values_in_slurm_formats_are_accepted():
  for time in ("30", "30:00", "01:00:00", "2-12", "2-12:30", "2-12:30:15",
               "UNLIMITED"):
    out = _launch("slurm", f"--time={time}", "--partition=gpu,debug",
                  "--job_name=my.run-1_a", "--gpus_per_node=0", "--dry-run",
                  "--", "--workdir=runs/a+b=c,d:e@f~g")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for line in (f"#SBATCH --time={time}", "#SBATCH --partition=gpu,debug",
                 "#SBATCH --job-name=my.run-1_a", "#SBATCH --gpus-per-node=0",
                 "#SBATCH --output=runs/a+b=c,d:e@f~g/slurm/%x-%j.out"):
      assert line in lines
  for bad in ("1:2:3:4", "1-2-3", "1h", "-5"):
    out = _launch("slurm", f"--time={bad}", "--dry-run", "--", "--workdir=x")
    assert out.returncode == 2 and "D-HH:MM:SS" in out.stderr, bad
