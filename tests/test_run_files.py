"""Run files (vocab.json, metadata.json, forecast_scaler.json): written once,
by process 0, atomically; every process reads the finished file."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import types

import pytest

from rnnlab import metrics
from rnnlab import rundir
from rnnlab.data import seq2seq as seq2seq_data
from rnnlab.data import series
from rnnlab.data import text
from rnnlab.errors import UserError
from rnnlab.tasks import char_lm
from rnnlab.tasks import forecast
from tests.helpers import ROOT, tiny_lm_config

# Each process builds the char LM's run files for one workdir (no training),
# logging when it saves and loads the vocabulary. Process 0 sleeps 1 s
# before saving: process 1 must neither write its own nor read before then.
SCRIPT = textwrap.dedent("""
    import json, sys, time
    from rnnlab import distributed
    workdir, corpus, port, pid = sys.argv[1:5]
    pid = int(pid)
    distributed.init_distributed(f"127.0.0.1:{port}", 2, pid)
    from rnnlab.data import text
    from rnnlab.tasks import char_lm
    from tests.helpers import tiny_lm_config
    events = []
    save, load = text.Vocab.save, text.load_vocab

    def logged_save(self, path):
      events.append(("save", time.time()))
      if pid == 0:
        time.sleep(1.0)
      save(self, path)
      events.append(("saved", time.time()))

    def logged_load(path):
      events.append(("load", time.time()))
      return load(path)

    text.Vocab.save, text.load_vocab = logged_save, logged_load
    task = char_lm.CharLMTask(tiny_lm_config(text__path=corpus))
    task.save_metadata(workdir)
    print(json.dumps(events))
    """)

CORPUS = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 20


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _leftovers(directory) -> list[str]:
  """Temporary files (a unique name per writer) left in `directory`."""
  return sorted(p.name for p in directory.iterdir() if ".tmp" in p.name)


def test_two_processes_write_the_vocabulary_once(tmp_path):
  corpus = tmp_path / "corpus.txt"
  corpus.write_text(CORPUS)
  workdir = tmp_path / "run"
  workdir.mkdir()
  port = _free_port()
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
         "JAX_PLATFORMS": "cpu"}
  procs = [subprocess.Popen(
      [sys.executable, "-c", SCRIPT, str(workdir), str(corpus), str(port),
       str(pid)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True) for pid in (0, 1)]
  events = []
  for p in procs:
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err[-3000:]
    events.append(dict(json.loads(out.strip().splitlines()[-1])))
  first, second = events
  assert set(first) == {"save", "saved", "load"}  # process 0 writes, reads
  assert set(second) == {"load"}  # process 1 only reads, once it is done
  assert second["load"] >= first["saved"]
  assert (workdir / rundir.VOCAB_FILE).read_text(encoding="utf-8") == (
      text.Vocab.from_text(CORPUS).to_json())
  assert _leftovers(workdir) == []


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
  path = tmp_path / "vocab.json"
  text.Vocab.from_text("abc").save(path)
  before = path.read_text(encoding="utf-8")
  # "\ud800" cannot be encoded as UTF-8: the write fails halfway through.
  with pytest.raises(UnicodeEncodeError):
    text.Vocab(["a", "\ud800"]).save(path)
  assert path.read_text(encoding="utf-8") == before
  assert _leftovers(tmp_path) == []


def test_the_writer_syncs_before_it_renames(tmp_path, monkeypatch):
  calls = []
  fsync, replace = os.fsync, os.replace
  monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"),
                                               fsync(fd))[1])
  monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("replace"),
                                                   replace(a, b))[1])
  metrics.write_json(tmp_path / "x.json", {"a": 1})
  assert calls == ["fsync", "replace"]
  assert metrics.read_json(tmp_path / "x.json") == {"a": 1}


def _crash_before_rename(monkeypatch):
  def crash(src, dst):
    raise OSError(f"simulated crash before renaming {src} to {dst}")
  monkeypatch.setattr(os, "replace", crash)


def test_seq2seq_vocabulary_is_written_atomically(tmp_path, monkeypatch):
  path = tmp_path / "vocab.json"
  seq2seq_data.Seq2SeqVocab("0123+").save(path)
  before = path.read_text(encoding="utf-8")
  _crash_before_rename(monkeypatch)
  with pytest.raises(OSError, match="simulated crash"):
    seq2seq_data.Seq2SeqVocab("0123456789+").save(path)
  assert path.read_text(encoding="utf-8") == before  # not half of the new
  assert _leftovers(tmp_path) == []
  monkeypatch.undo()
  assert seq2seq_data.Seq2SeqVocab.load(path) == seq2seq_data.Seq2SeqVocab(
      "0123+")


def test_forecast_scaler_is_written_atomically(tmp_path, monkeypatch):
  # The task's save_metadata on its metadata alone: building a ForecastTask
  # imports statsmodels (seconds).
  meta = {"series": "sine", "points": 400, "train_end": 280, "val_end": 340,
          "scaler": series.Scaler(False, 0.25, 1.5).to_json()}
  task = types.SimpleNamespace(metadata=lambda: meta)
  task.save_metadata = lambda workdir: forecast.ForecastTask.save_metadata(
      task, workdir)
  path = tmp_path / forecast.SCALER_FILE
  _crash_before_rename(monkeypatch)
  with pytest.raises(OSError, match="simulated crash"):
    task.save_metadata(tmp_path)
  assert not path.exists()  # no truncated copy to block a resume
  assert _leftovers(tmp_path) == []
  monkeypatch.undo()
  task.save_metadata(tmp_path)
  assert json.loads(path.read_text()) == meta
  task.save_metadata(tmp_path)  # a resume accepts it


def test_a_damaged_vocabulary_says_what_to_do(tmp_path):
  corpus = tmp_path / "corpus.txt"
  corpus.write_text(CORPUS)
  task = char_lm.CharLMTask(tiny_lm_config(text__path=str(corpus)))
  (tmp_path / rundir.VOCAB_FILE).write_text('{"type": "char", "cha')
  with pytest.raises(UserError, match=r"vocab.json is damaged or not this "
                     r"run's file \(.*\). .* delete it and rerun to resume"):
    task.save_metadata(tmp_path)
