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
from rnnlab import sampling
from tests.helpers import ROOT
from tests.helpers import tiny_config

SCRIPT = textwrap.dedent("""
    import sys
    import jax
    from rnnlab import train
    from tests.helpers import tiny_lm_config, use_suite_settings
    use_suite_settings()  # the tests' compilation cache and XLA options
    # One kernel on both sides ("auto" runs "native" on one device and
    # "fused" on several, equal only to rounding that Adam amplifies where
    # gradients are near zero): this test is about splitting the data.
    config = tiny_lm_config("gru", model__dropout_rate=0.2, train__steps=6,
                            model__implementation="fused",
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
    template = sampling.load_run_for_inference(one).params
    a = checkpoint.Checkpointer(one / "checkpoints", read_only=True)
    b = checkpoint.Checkpointer(four / "checkpoints", read_only=True)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-5),
                 a.restore_params(template)[1],
                 b.restore_params(template)[1])


def _configs():
  """One small config per task and batch order: the configs' runlocal."""
  # 20 seq2seq examples to hold out, not 40: fewer dates to render.
  held_out = dict(seq2seq__num_val=20, seq2seq__num_test=20)
  return {
      "char_lm": tiny_config("gru_shakespeare"),
      "char_lm_stateful": tiny_config("gru_shakespeare",
                                      train__order="stateful"),
      "word_lm": tiny_config("gru_word_shakespeare"),
      "classify": tiny_config("gru_japanese_vowels"),
      "forecast": tiny_config("gru_forecast_sine"),
      "synthetic": tiny_config("lstm_copy_memory"),
      "seq2seq_addition": tiny_config("gru_seq2seq_addition", **held_out),
      "seq2seq_dates": tiny_config("gru_seq2seq_dates", **held_out)}


def test_each_process_loads_exactly_its_rows(corpus_path):
  """Process i of n asks only for rows [i*B/n, (i+1)*B/n); put together,
  the processes' rows are the single-process batch."""
  del corpus_path
  from rnnlab import tasks
  for name, config in _configs().items():
    config.train.batch_size = 8
    task = tasks.create_task(config)
    for step in (0, 3):
      full = task.train_batch(step)
      for n in (2, 4):
        parts = [task.train_batch(step, slice(i * 8 // n, (i + 1) * 8 // n))
                 for i in range(n)]
        for key, value in full.items():
          if np.ndim(value) == 0:  # e.g. the stateful reset flag
            assert all(p[key] == value for p in parts), (name, key)
          else:
            assert all(len(p[key]) == 8 // n for p in parts), (name, key)
            np.testing.assert_array_equal(
                np.concatenate([p[key] for p in parts]), value,
                err_msg=f"{name} {key} step {step} n={n}")
