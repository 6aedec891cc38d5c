"""Errors a user can fix, and how a run stopped early. Entry points print
their message without a traceback.

Each UserError is a ValueError, so library callers can catch them the usual
way.
"""


class UserError(ValueError):
  """Bad input: the message names the bad value and the valid choices."""


class DataError(UserError):
  """The data cannot be found or read; the message says how to supply it."""


class CheckpointError(UserError):
  """A checkpoint is missing, unreadable or does not fit the config."""


class CheckpointReadError(Exception):
  """Reading a checkpoint failed at the OS level (EIO, ESTALE, EACCES, out
  of memory) and kept failing after retries. Not a UserError (the input may
  be fine) and not damage: nothing was moved or deleted, and rerunning once
  the file system recovers resumes normally. Entry points exit 75.

  `path` is the file or directory whose read failed."""

  def __init__(self, message: str, path=None):
    super().__init__(message)
    self.path = path


class TrainingDiverged(RuntimeError):
  """A non-finite loss or gradient stopped the run (train.on_nonfinite)."""


class Preempted(Exception):
  """A preemption notice (SIGTERM) stopped the run after saving a checkpoint
  at `step`; starting the same run again resumes from it. Not an error."""

  def __init__(self, step: int):
    super().__init__(f"Preempted at step {step}: checkpoint saved; run the "
                     "same command again to resume.")
    self.step = step
