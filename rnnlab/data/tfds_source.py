"""TFDS datasets read without TensorFlow (`tfds.data_source`), prepared on
first use, with quick and clear failures where no download can work.

Both text families read TFDS through here: the char LM's corpus
(`text.source="tfds"`) and text classification (`classify.source="tfds"`).
A dataset already prepared under its data directory is read as it is.
Otherwise it is downloaded and prepared, but only after a quick network
check: without one, TFDS retries for minutes before it fails. With
RNNLAB_OFFLINE=1 nothing is downloaded.
"""
from __future__ import annotations

import importlib
import os
import socket
import threading

from rnnlab.errors import DataError

# TFDS downloads start from its GCS mirror: if that host cannot be reached
# within the timeout, a download cannot work, and we say so at once instead
# of letting TFDS retry for minutes.
PROBE_HOST = ("storage.googleapis.com", 443)
NETWORK_TIMEOUT_S = 10.0
# What a failed read or preparation raises inside TFDS.
_TFDS_ERRORS = (NotImplementedError, AssertionError, OSError, ValueError,
                KeyError)


def offline() -> bool:
  """RNNLAB_OFFLINE=1: read what is present, never download."""
  return os.environ.get("RNNLAB_OFFLINE", "").lower() in ("1", "true", "yes")


def import_tfds(key: str):
  """tensorflow_datasets, or a DataError naming the config `key` that
  asked for it and the extra that installs it."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise DataError(f"{key}='tfds' needs tensorflow-datasets: pip install "
                    "'rnnlab[tfds]'.") from None
  return tfds


def reachable(host: tuple[str, int], timeout: float) -> str | None:
  """None if a TCP connection to `host` opens within `timeout` seconds, else
  why not. Runs in a thread, since a socket timeout does not bound the DNS
  lookup."""
  result = ["timed out after %.0f s" % timeout]

  def probe():
    try:
      socket.create_connection(host, timeout=timeout).close()
      result[0] = None
    except OSError as e:
      result[0] = str(e)

  thread = threading.Thread(target=probe, daemon=True)
  thread.start()
  thread.join(timeout)
  return result[0]


def _data_source(tfds, name: str, name_key: str, **kwargs):
  """`tfds.data_source`, importing TFDS's legacy text builders (glue, ...)
  if the name is unknown: without TensorFlow, TFDS's lazy import of its
  builder packages stops before registering them."""
  try:
    return tfds.data_source(name, **kwargs)
  except tfds.core.registered.DatasetNotFoundError:
    importlib.import_module("tensorflow_datasets.text")
    try:
      return tfds.data_source(name, **kwargs)
    except tfds.core.registered.DatasetNotFoundError as e:
      raise DataError(f"Unknown TFDS dataset {name_key}={name!r}: "
                      f"{e}") from None


def how_to_prepare(name: str, data_dir: str, data_dir_key: str) -> str:
  where = data_dir or "$TFDS_DATA_DIR or ~/tensorflow_datasets"
  return (f"Prepare it where there is network access with\n"
          f"  python -c \"import tensorflow_datasets as tfds; "
          f"tfds.data_source('{name}', data_dir='<dir>')\"\n"
          f"and copy <dir> here as {where} (or set "
          f"--config.{data_dir_key}=<dir>).")


def split_source(name: str, split: str, data_dir: str = "", *,
                 section: str = "classify"):
  """The random-access source of one split of TFDS dataset `name`: already
  prepared data under `data_dir` ("" = TFDS's default) if present, else a
  download (after a quick network check; never with RNNLAB_OFFLINE=1).
  `section` names the config section whose keys errors point at."""
  tfds = import_tfds(f"{section}.source")
  name_key = ("classify.tfds_name" if section == "classify"
              else f"{section}.corpus")
  data_dir_key = f"{section}.tfds_data_dir"
  kwargs = dict(split=split, data_dir=data_dir or None)
  try:
    return _data_source(tfds, name, name_key, download=False, **kwargs)
  except _TFDS_ERRORS as e:
    not_prepared = e
  how = how_to_prepare(name, data_dir, data_dir_key)
  if offline():
    raise DataError(f"TFDS dataset {name!r} (split {split!r}) is not "
                    f"prepared ({not_prepared}) and RNNLAB_OFFLINE is set, so "
                    f"no download was tried. {how}")
  why = reachable(PROBE_HOST, NETWORK_TIMEOUT_S)
  if why is not None:
    raise DataError(f"TFDS dataset {name!r} (split {split!r}) is not "
                    f"prepared and cannot be downloaded: {PROBE_HOST[0]} is "
                    f"unreachable ({why}). {how}")
  try:
    return _data_source(
        tfds, name, name_key, download=True,
        download_and_prepare_kwargs={"download_config":
                                     tfds.download.DownloadConfig(
                                         try_download_gcs=False)},
        **kwargs)
  except _TFDS_ERRORS as e:
    raise DataError(f"TFDS dataset {name!r} (split {split!r}) could not be "
                    f"downloaded and prepared: {e}. {how}") from None
