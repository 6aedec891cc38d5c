"""Data parallelism: one "data" mesh axis over every device of every process.

The trainer keeps its state replicated and splits each batch (and carried
state) on its first axis; each process loads only its rows of the global
batch (`process_rows`) and `shard_batch` assembles the global arrays.
"""
from __future__ import annotations

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np


def local(tree):
  """This process's copy of replicated global arrays (host reads,
  evaluation, sampling), which a multi-process array does not allow
  directly; single-process arrays pass through."""
  return jax.tree.map(
      lambda x: x.addressable_data(0) if isinstance(x, jax.Array) and
      not x.is_fully_addressable else x, tree)


def make_mesh() -> Mesh:
  """All devices of all processes on one "data" axis."""
  return Mesh(np.asarray(jax.devices()), ("data",))


def batch_sharding(mesh: Mesh, tree):
  """Arrays split on their first (batch) axis over "data"; scalars (e.g. a
  reset flag) replicated."""
  return jax.tree.map(
      lambda x: NamedSharding(mesh, P("data") if np.ndim(x) else P()), tree)


def process_rows(batch_size: int) -> slice | None:
  """The rows of a global batch this process loads: [i*B/n, (i+1)*B/n) for
  process i of n; None (all) for a single process."""
  n, i = jax.process_count(), jax.process_index()
  if n == 1:
    return None
  per = batch_size // n
  return slice(i * per, (i + 1) * per)


def shard_batch(mesh: Mesh, batch):
  """This process's rows of a batch (`process_rows`; all rows for a single
  process) -> global arrays split over the mesh. Scalars are replicated."""
  shardings = batch_sharding(mesh, batch)
  n = jax.process_count()

  def put(x, sharding):
    x = np.asarray(x)
    if n == 1 or x.ndim == 0:
      return jax.device_put(x, sharding)
    return jax.make_array_from_process_local_data(
        sharding, x, (x.shape[0] * n,) + x.shape[1:])

  return jax.tree.map(put, batch, shardings)


def on_mesh(tree, sharding):
  """Leaves already placed as `sharding` stay; host-made ones (identical on
  every process) are put there."""
  def put(x):
    if isinstance(x, jax.Array) and x.sharding.is_equivalent_to(sharding,
                                                                x.ndim):
      return x
    return jax.device_put(np.asarray(x), sharding)
  return jax.tree.map(put, tree)
