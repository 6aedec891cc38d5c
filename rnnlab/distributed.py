"""Joining JAX's multi-controller runtime: explicit flags, SLURM or a TPU VM.

Process 0's coordinator listens on the interface of the coordinator address
only (JAX's default is every interface, and the service has no
authentication); a process that sees several SLURM tasks outside an srun
step stops at once instead of waiting for peers. The README's multi-host
section lists the ports a job opens.
"""
from __future__ import annotations

import json
import os
from typing import Any

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

from rnnlab.errors import UserError


# SLURM numbers its special steps (batch script 0xfffffffb, interactive
# 0xfffffffa, extern 0xfffffffc) above the last id a normal srun step gets.
_SLURM_MAX_NORMAL_STEP_ID = 0xFFFFFFF0


def _check_slurm_step(tasks: int) -> None:
  """Refuses SLURM_NTASKS > 1 outside an srun step: the batch script itself
  or an salloc shell is one process, and JAX would wait (300 s) for peers
  that never start. srun gives each task of a step SLURM_STEP_ID (a normal
  step's id) and SLURM_STEP_NODELIST (where JAX finds the coordinator);
  sbatch and salloc set SLURM_NTASKS without them, or with a special id."""
  step = os.environ.get("SLURM_STEP_ID", os.environ.get("SLURM_STEPID", ""))
  normal = step.isdigit() and int(step) <= _SLURM_MAX_NORMAL_STEP_ID
  if normal and os.environ.get("SLURM_STEP_NODELIST"):
    return
  why = ("no SLURM_STEP_ID" if not step else
         f"SLURM_STEP_ID={step} is not an srun step" if not normal else
         "no SLURM_STEP_NODELIST")
  raise UserError(
      f"SLURM_NTASKS={tasks} but this process is not a task of an srun step "
      f"({why}; e.g. the batch script itself or an salloc shell), so it "
      f"would wait for {tasks - 1} peers that never start. Run it with srun "
      "(`srun python -m rnnlab.main ...`, one task per process, as "
      "`./launch.sh slurm` does), pass --coordinator_address, "
      "--num_processes and --process_id, or unset SLURM_NTASKS to run one "
      "process.")


def _split_host_port(address: str, what: str) -> tuple[str, int]:
  """"host:port" or "[v6 address]:port" -> (host, port); else a UserError."""
  host, _, port = address.rpartition(":")
  if host.startswith("[") and host.endswith("]"):
    host = host[1:-1]
  if not (host and port.isdigit() and 0 < int(port) < 65536):
    raise UserError(f"{what}={address!r}: expected host:port, e.g. "
                    "10.0.0.1:1234 or [fd00::1]:1234.")
  return host, int(port)


def _coordinator_bind_address(address: str, what: str) -> str | None:
  """Where process 0's coordinator listens: the interface of `address`, the
  host:port the other processes connect to. JAX's default is [::]:port,
  every interface, and the service has no authentication.

  None (JAX's default, with a warning) where that interface cannot be bound
  here: an address of another machine (e.g. a public IP behind NAT), or a
  hostname other than localhost that resolves to loopback on this machine
  (e.g. Debian's 127.0.1.1) while other nodes resolve it to a real address.
  JAX_COORDINATOR_BIND_ADDRESS, if set, wins (JAX reads it).
  """
  import ipaddress  # pylint: disable=g-import-not-at-top
  import socket  # pylint: disable=g-import-not-at-top
  host, port = _split_host_port(address, what)
  if os.environ.get("JAX_COORDINATOR_BIND_ADDRESS"):
    return None
  try:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
  except socket.gaierror as e:
    raise UserError(
        f"{what}={address!r}: cannot resolve {host!r} ({e}).") from e
  try:
    ipaddress.ip_address(host)
    literal = True
  except ValueError:
    literal = False
  every = (f"the coordinator listens on every interface (port {port}; no "
           "authentication): keep it inside the cluster network, or set "
           "JAX_COORDINATOR_BIND_ADDRESS=<this machine's ip>:<port>")
  ips = [info[4][0] for info in infos]
  if (not literal and host != "localhost" and
      all(ipaddress.ip_address(ip.split("%")[0]).is_loopback for ip in ips)):
    logging.warning("%s=%s resolves to loopback here (%s), not to an address "
                    "other machines reach; %s.", what, address,
                    ", ".join(ips), every)
    return None
  for family, _, _, _, sockaddr in infos:
    with socket.socket(family, socket.SOCK_STREAM) as s:
      try:  # can this machine listen there?
        s.bind((sockaddr[0], 0, *sockaddr[2:]))
      except OSError:
        continue
    ip = sockaddr[0]
    return f"[{ip}]:{port}" if family == socket.AF_INET6 else f"{ip}:{port}"
  logging.warning("%s=%s (%s) is not an address of this machine; %s.", what,
                  address, ", ".join(ips), every)
  return None


def _initialize_detected() -> None:
  """jax.distributed.initialize() from what JAX detects (SLURM, TPU VM),
  except that process 0's coordinator listens on the detected coordinator
  address's interface only."""
  try:  # private: JAX's own detection, run first to learn the address
    from jax._src import clusters  # pylint: disable=g-import-not-at-top
    detect = clusters.ClusterEnv.auto_detect_unset_distributed_params
  except (ImportError, AttributeError):
    logging.warning("This JAX cannot tell the coordinator address before it "
                    "starts: the coordinator listens on every interface.")
    jax.distributed.initialize()
    return
  address, count, pid, _ = detect(
      coordinator_address=os.environ.get("JAX_COORDINATOR_ADDRESS"),
      num_processes=None, process_id=None, local_device_ids=None,
      cluster_detection_method=None, initialization_timeout=300)
  if None in (address, count, pid):
    jax.distributed.initialize()  # its error says what is missing
    return
  bind = (_coordinator_bind_address(address, "the detected coordinator "
                                    "address") if pid == 0 else None)
  # local_device_ids stays None: JAX fills it as it always does.
  jax.distributed.initialize(address, count, pid,
                             coordinator_bind_address=bind)


def init_distributed(coordinator_address: str | None = None,
                     num_processes: int | None = None,
                     process_id: int | None = None) -> bool:
  """Joins JAX's multi-controller runtime when this is one of several
  processes; returns whether it did.

  Explicit arguments win. Otherwise a SLURM job with more than one task, or
  a TPU VM with several workers, is detected from the environment and
  `jax.distributed.initialize()` reads the rest from it. A single process
  needs no runtime: nothing happens. Process 0's coordinator listens on the
  coordinator address's interface only (not JAX's default, all of them).
  """
  # CPU processes exchange gradients through gloo (no-op for GPU/TPU).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if coordinator_address or num_processes or process_id is not None:
    if not (coordinator_address and num_processes and process_id is not None):
      raise UserError(
          "--coordinator_address, --num_processes and --process_id go "
          "together (or none of them, to detect SLURM or a TPU VM); got "
          f"{coordinator_address!r}, {num_processes!r}, {process_id!r}.")
    what = "--coordinator_address"
    _split_host_port(coordinator_address, what)
    bind = (_coordinator_bind_address(coordinator_address, what)
            if process_id == 0 else None)
    jax.distributed.initialize(coordinator_address, num_processes,
                               process_id, coordinator_bind_address=bind)
    return True
  slurm_tasks = int(os.environ.get("SLURM_NTASKS", "1") or 1)
  tpu_workers = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  if slurm_tasks > 1 or "," in tpu_workers:
    if slurm_tasks > 1:
      _check_slurm_step(slurm_tasks)
    _initialize_detected()
    return True
  return False


def broadcast_json(value: Any) -> Any:
  """Process 0's JSON-able `value`, on every process (itself if only one)."""
  if jax.process_count() == 1:
    return value
  data = np.frombuffer(json.dumps(value).encode(), np.uint8)
  size = int(multihost_utils.broadcast_one_to_all(np.int32(data.size)))
  buffer = np.zeros(size, np.uint8)
  if jax.process_index() == 0:
    buffer[:] = data
  data = multihost_utils.broadcast_one_to_all(buffer)
  return json.loads(bytes(np.asarray(data)).decode())


def allgather_int(value: int) -> list[int]:
  """Every process's `value`, by process index."""
  if jax.process_count() == 1:
    return [value]
  return [int(v) for v in np.asarray(
      multihost_utils.process_allgather(np.int32(value))).reshape(-1)]
