"""Data parallelism: training on 4 (simulated CPU) devices gives the same
losses and parameters as 1 device at the same global batch and seed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np

from rnnlab import checkpoint
from rnnlab import train
from tests.conftest import ROOT

SCRIPT = textwrap.dedent("""
    import sys
    import jax
    from rnnlab import train
    from tests.conftest import tiny_lm_config
    config = tiny_lm_config("gru", model__dropout_rate=0.2, train__steps=6,
                            train__log_every=1, train__eval_every=6,
                            train__checkpoint_every=6,
                            train__order=sys.argv[2])
    train.train_and_evaluate(config, sys.argv[1])
    """)


def _run(workdir, devices: int, order: str):
  env = {**os.environ,
         "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  out = subprocess.run([sys.executable, "-c", SCRIPT, str(workdir), order],
                       cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  model = json.loads((workdir / "model.json").read_text())
  assert model["devices"] == devices
  losses = [json.loads(l)["loss"] for l in (workdir / "metrics.jsonl").open()
            if json.loads(l)["split"] == "train"]
  return losses


def test_four_devices_match_one(tmp_path, corpus_path):
  del corpus_path
  # Stateful batches: the carried state is split over the devices too.
  for order in ("stateful",):
    one, four = tmp_path / f"one_{order}", tmp_path / f"four_{order}"
    losses_one = _run(one, 1, order)
    losses_four = _run(four, 4, order)
    assert len(losses_one) == 5  # steps 2-6 (step 1 logs compile time)
    np.testing.assert_allclose(losses_four, losses_one, rtol=1e-5, atol=1e-5)
    template = train.load_run_for_inference(one).params
    a = checkpoint.Checkpointer(one / "checkpoints", read_only=True)
    b = checkpoint.Checkpointer(four / "checkpoints", read_only=True)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-5),
                 a.restore_params(template)[1],
                 b.restore_params(template)[1])
