"""rollwise's own error types: everything a user can cause (a bad setting, file, folder or data row) is
raised as a :class:`RollwiseError` whose message is one line naming the key, file or line at fault.

The ``rollwise`` command prints such errors without a traceback (``--debug`` shows it).
"""

from __future__ import annotations


class RollwiseError(Exception):
    """An error the user can fix; its message is one line and names what is wrong and what is allowed."""


class RunDirError(RollwiseError):
    """A run folder cannot be used: it belongs to another run, holds the user's files, or has no checkpoint."""


class CheckpointError(RollwiseError):
    """A checkpoint is missing, unreadable or corrupt."""


class DataError(RollwiseError, ValueError):
    """A data file is unusable: unreadable bytes, a malformed row, too few rows, an unparsable answer."""


class ModelNotFoundError(CheckpointError, FileNotFoundError):
    """A model is neither a local folder nor reachable on the hub (offline, or a local-looking path)."""
