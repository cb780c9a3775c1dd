"""Errors that ft reports to the user as one line and exit code 2.

A user mistake (config, data, model path, plugin set) is never a traceback: everything that is the
user's to fix raises a subclass of :class:`FtUserError`, and the CLI prints ``ft: error: <message>``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

EXIT_USER_ERROR = 2


class FtUserError(Exception):
    """Something the user can fix; printed as one line, exit code 2."""

    exit_code = EXIT_USER_ERROR


class ConfigError(FtUserError):
    """The composed config is invalid (unknown key, wrong type, bad value, missing file)."""


class PluginError(FtUserError):
    """A plugin is missing, fails to import, or conflicts with another one."""


class DataError(FtUserError):
    """The training data is malformed (bad JSON, missing field, nothing to train on)."""


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidate, or an empty string."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""
