"""Orbax checkpoints: save, find the latest, restore (all or params only).

Layout: <workdir>/checkpoints/<step>/{params,opt_state,meta[,train_carry]}. Orbax writes
each step to a temporary directory and renames it when complete, so a crash
mid-save leaves the previous step intact and the partial one is ignored.
"""
from __future__ import annotations

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

from rnnlab.errors import CheckpointError


def _abstract(tree):
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpointer:
  """Thin wrapper over `ocp.CheckpointManager` with rnnlab's items."""

  def __init__(self, directory: pathlib.Path, max_to_keep: int | None = None,
               read_only: bool = False):
    self.directory = pathlib.Path(directory).absolute()
    # Orbax names its cross-process barriers by step ("_async_write_complete.6").
    # Two managers saving the same step at once (latest and best) would meet
    # at one barrier and deadlock; a per-directory prefix keeps them apart.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=not read_only, read_only=read_only,
        multiprocessing_options=ocp.options.MultiprocessingOptions(
            barrier_sync_key_prefix=self.directory.name))
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, params, opt_state, meta: dict[str, Any],
           train_carry=None):
    """Starts an async save of step `step`; `wait()` blocks until it lands.

    `train_carry` is the recurrent state carried between training batches
    (truncated BPTT), saved so that a resumed run continues it exactly.
    """
    items = dict(params=ocp.args.StandardSave(params),
                 opt_state=ocp.args.StandardSave(opt_state),
                 meta=ocp.args.JsonSave(meta))
    if train_carry is not None:
      items["train_carry"] = ocp.args.StandardSave(train_carry)
    self.manager.save(step, args=ocp.args.Composite(**items), force=True)

  def restore(self, params_template, opt_state_template,
              step: int | None = None, train_carry_template=None):
    """Restores (step, params, opt_state, meta, train_carry) into the
    templates' shapes; train_carry is None without a template."""
    step = self._step(step)
    items = dict(
        params=ocp.args.StandardRestore(_abstract(params_template)),
        opt_state=ocp.args.StandardRestore(_abstract(opt_state_template)),
        meta=ocp.args.JsonRestore())
    if train_carry_template is not None:
      items["train_carry"] = ocp.args.StandardRestore(
          _abstract(train_carry_template))
    try:
      out = self.manager.restore(step, args=ocp.args.Composite(**items))
    except (ValueError, KeyError, TypeError, FileNotFoundError) as e:
      raise CheckpointError(
          f"Checkpoint {self.directory / str(step)} does not match the "
          f"model and optimizer of this config: {e}") from e
    carry = (out["train_carry"] if train_carry_template is not None
             else None)
    return step, out["params"], out["opt_state"], out["meta"], carry

  def restore_params(self, params_template, step: int | None = None):
    """Restores only (step, params): enough for evaluation and sampling."""
    step = self._step(step)
    try:
      out = self.manager.restore(step, args=ocp.args.Composite(
          params=ocp.args.StandardRestore(_abstract(params_template))))
    except (ValueError, KeyError, TypeError) as e:
      raise CheckpointError(
          f"Checkpoint {self.directory / str(step)} does not match the "
          f"model of this config: {e}") from e
    return step, out["params"]

  def _step(self, step):
    step = self.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f"No checkpoint in {self.directory}.")
    return step

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()
