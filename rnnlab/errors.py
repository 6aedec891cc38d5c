"""Errors a user can fix. Entry points print their message without a traceback.

Each is a ValueError, so library callers can catch them the usual way.
"""


class UserError(ValueError):
  """Bad input: the message names the bad value and the valid choices."""


class DataError(UserError):
  """The data cannot be found or read; the message says how to supply it."""


class CheckpointError(UserError):
  """A checkpoint is missing, unreadable or does not fit the config."""


class TrainingDiverged(RuntimeError):
  """A non-finite loss or gradient stopped the run (train.on_nonfinite)."""
