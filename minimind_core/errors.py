"""The library's errors: one base class, one subclass per domain.

Library modules raise these with a message that says what was wrong and where (file, line,
field) and what to do; the command line (minimind_core.cli) prints any MiniMindError as one line
without a traceback. None of them needs torch, so raising and catching them is cheap.

    MiniMindError
    ├── DataError          a data file's content: bad JSON, a missing field, an empty file
    ├── CheckpointError    a model or run folder: missing, incomplete, of another kind
    ├── TrainError         a run's options or state (NonFiniteLossError: NaN/inf loss)
    ├── DownloadError      fetching MiniMind's data (VerificationError: checksum or size;
    │                      RetiredFileError: a file MiniMind no longer publishes)
    ├── EvalError          an evaluation file or request
    └── ExportError        a model that cannot be written in the asked format
"""
from __future__ import annotations


class MiniMindError(Exception):
    """Base class: a problem the user can fix, reported in one line."""


class DataError(MiniMindError, ValueError):
    """A bad line in a data file: `path`, 1-based `line` (0: the file as a whole), `field` (or None)
    and `reason`; str(e) is "path:line: field F: reason"."""

    def __init__(self, path, line: int, reason: str, field: str | None = None):
        self.path = str(path)
        self.line = line
        self.field = field
        self.reason = reason
        where = f"{self.path}:{line}" if line else self.path
        what = f"field {field}: {reason}" if field else reason
        super().__init__(f"{where}: {what}")


class CheckpointError(MiniMindError):
    """A model, checkpoint or run folder is missing, incomplete or not what was expected."""


class TrainError(MiniMindError):
    """A problem with a training run's inputs or state."""


class NonFiniteLossError(TrainError):
    """The loss became NaN or infinite; the run stopped before applying that update."""


class DownloadError(MiniMindError):
    """A data file could not be fetched; the message names the URLs tried and what to do."""


class VerificationError(DownloadError):
    """A downloaded file's size or checksum is not the expected one."""


class RetiredFileError(DownloadError, ValueError):
    """A data file MiniMind no longer publishes was asked for; the message names its replacement."""


class EvalError(MiniMindError, ValueError):
    """An evaluation file or request is malformed."""


class ExportError(MiniMindError):
    """A model cannot be written in the asked format (an MoE model to GGUF, an unknown dtype, ...)."""


__all__ = ["MiniMindError", "DataError", "CheckpointError", "TrainError", "NonFiniteLossError",
           "DownloadError", "VerificationError", "RetiredFileError", "EvalError", "ExportError"]
