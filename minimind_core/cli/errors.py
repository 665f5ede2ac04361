"""The command line's own error: a bad combination of arguments, reported in one line.

Library modules never raise it: they raise the domain errors of `minimind_core.errors`, and
`cli.main` prints those the same way (`error: <message>`, exit code 2).
"""
from __future__ import annotations

from ..errors import MiniMindError


class CLIError(MiniMindError):
    """An error to report to the user in one line, without a traceback."""


__all__ = ["CLIError"]
