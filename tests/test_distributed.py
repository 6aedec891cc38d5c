"""distributed.init_distributed's networking: process 0's coordinator listens on the
coordinator address's interface only (explicit or detected from SLURM), not
JAX's default [::]:port; a SLURM_NTASKS > 1 process outside an srun step
exits at once (exit 2, one line) instead of waiting for peers."""
from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from rnnlab import distributed
from rnnlab.errors import UserError
from tests.helpers import ROOT

# Joins the runtime the way rnnlab.main does, says so, and stays up (its
# sockets open) until the test closes stdin.
SCRIPT = textwrap.dedent("""
    import sys
    from rnnlab import distributed
    if len(sys.argv) > 1:  # explicit; else detected from the environment
      address, count, pid = sys.argv[1:]
      assert distributed.init_distributed(address, int(count), int(pid))
    else:
      assert distributed.init_distributed()
    print("ready", flush=True)
    sys.stdin.read()
    """)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _clean_env(**extra) -> dict[str, str]:
  """This environment without SLURM's, TPU's or JAX's coordinator settings."""
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("SLURM_", "TPU_", "JAX_COORDINATOR",
                              "MEGASCALE_"))}
  return {**env, "JAX_PLATFORMS": "cpu", **extra}


def _hex_ip(field: str) -> str:
  """/proc/net/tcp{,6}'s address: 32-bit words in host (little-endian) order."""
  raw = bytes.fromhex(field)
  words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
  if len(words) == 4:
    return str(ipaddress.IPv4Address(words))
  v6 = ipaddress.IPv6Address(words)
  return str(v6.ipv4_mapped or v6)  # gRPC listens on 127.0.0.1 as ::ffff:...


def _listeners(port: int) -> list[str]:
  """Every address this machine listens on at TCP `port` (Linux)."""
  found = []
  for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    if not os.path.exists(table):
      continue
    with open(table) as f:
      for line in f.read().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
          found.append(_hex_ip(address))
  return found


def _start(args, env):
  return subprocess.Popen([sys.executable, "-c", SCRIPT, *map(str, args)],
                          cwd=ROOT, env=env, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def _wait_ready(proc) -> None:
  line = proc.stdout.readline()
  if line != "ready\n":
    proc.kill()
    pytest.fail(f"no 'ready' (rc {proc.wait()}): {proc.stderr.read()[-3000:]}")


def _stop(*procs) -> None:
  for proc in procs:
    proc.stdin.close()
  for proc in procs:
    try:
      proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
      proc.kill()


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="Linux only")
def test_coordinator_listens_only_on_the_given_address():
  port = _free_port()
  proc = _start(["127.0.0.1:" + str(port), 1, 0], _clean_env())
  try:
    _wait_ready(proc)
    # Before: ["::"] (JAX's default [::]:port, every interface).
    assert _listeners(port) == ["127.0.0.1"]
  finally:
    _stop(proc)


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="Linux only")
def test_detected_slurm_coordinator_listens_on_its_node_only():
  # Two tasks of an srun step on one node ("localhost"), as srun sets them.
  port = _free_port()
  procs = [
      _start([], _clean_env(
          SLURM_JOB_ID="7", SLURM_STEP_ID="0", SLURM_STEPID="0",
          SLURM_STEP_NODELIST="localhost", SLURM_NTASKS="2",
          SLURM_STEP_NUM_TASKS="2", SLURM_PROCID=str(pid),
          SLURM_LOCALID=str(pid), JAX_COORDINATOR_PORT=str(port)))
      for pid in (0, 1)]
  try:
    for proc in procs:
      _wait_ready(proc)
    listening = _listeners(port)
    assert len(listening) == 1 and listening[0] in ("127.0.0.1", "::1"), (
        listening)
  finally:
    _stop(*procs)


def test_bind_address_is_the_coordinators_interface(monkeypatch):
  monkeypatch.delenv("JAX_COORDINATOR_BIND_ADDRESS", raising=False)
  bind = distributed._coordinator_bind_address  # pylint: disable=protected-access
  flag = "--coordinator_address"
  assert bind("127.0.0.1:1234", flag) == "127.0.0.1:1234"
  assert bind("localhost:1234", flag) in ("127.0.0.1:1234", "[::1]:1234")
  try:
    with socket.socket(socket.AF_INET6) as s:
      s.bind(("::1", 0))
    assert bind("[::1]:1234", flag) == "[::1]:1234"
  except OSError:
    pass  # no IPv6 loopback here
  # Not this machine's (TEST-NET-3), or a name that means loopback only
  # here: JAX's default (every interface), with a warning.
  assert bind("203.0.113.7:1234", flag) is None
  real_getaddrinfo = socket.getaddrinfo

  def fake_getaddrinfo(host, *args, **kwargs):
    if host == "node07":  # Debian's /etc/hosts line for its own name
      return real_getaddrinfo("127.0.1.1", *args, **kwargs)
    return real_getaddrinfo(host, *args, **kwargs)

  monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
  assert bind("node07:1234", flag) is None
  monkeypatch.setenv("JAX_COORDINATOR_BIND_ADDRESS", "127.0.0.1:1234")
  assert bind("127.0.0.1:1234", flag) is None  # JAX reads the user's choice
  for bad in ("nohost", "host:", ":1234", "host:99999", "host:http"):
    with pytest.raises(UserError, match="expected host:port"):
      bind(bad, flag)


# A process that SLURM_NTASKS says is one of 4, outside any srun step:
# sbatch's batch script (no step variables), the batch step or salloc's
# interactive step as srun-style variables (special step ids).
_NOT_SRUN = {
    "batch script": {},
    "batch step id": {"SLURM_STEP_ID": str(0xFFFFFFFB),
                      "SLURM_STEP_NODELIST": "localhost"},
    "interactive step id": {"SLURM_STEP_ID": str(0xFFFFFFFA),
                            "SLURM_STEP_NODELIST": "localhost"},
}


@pytest.mark.parametrize("case", sorted(_NOT_SRUN))
def test_slurm_tasks_outside_srun_exit_at_once(case, tmp_path):
  env = _clean_env(
      SLURM_JOB_ID="7", SLURM_NTASKS="4", SLURM_NPROCS="4", SLURM_NNODES="2",
      SLURM_JOB_NODELIST="localhost", SLURM_NODELIST="localhost",
      SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0",
      JAX_COORDINATOR_PORT=str(_free_port()), **_NOT_SRUN[case])
  # Before: "batch script" died on JAX's ValueError (a traceback); the
  # others waited 300 s for peers (the timeout here ends them).
  out = subprocess.run(
      [sys.executable, "-m", "rnnlab.main", f"--workdir={tmp_path}/run"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
  assert out.returncode == 2, out.stderr[-3000:]
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1, out.stderr
  assert lines[0].startswith("error: SLURM_NTASKS=4 but this process is not "
                             "a task of an srun step")
  assert "Run it with srun" in lines[0]


def test_slurm_step_check_accepts_srun_tasks(monkeypatch):
  check = distributed._check_slurm_step  # pylint: disable=protected-access
  monkeypatch.setenv("SLURM_STEP_ID", "3")
  monkeypatch.setenv("SLURM_STEP_NODELIST", "node[01-02]")
  check(4)  # an srun step's task: no error
  monkeypatch.delenv("SLURM_STEP_NODELIST")
  with pytest.raises(UserError, match="no SLURM_STEP_NODELIST"):
    check(4)
