"""Errors that reach the user, shared by every part of the backend.

    raise InputError("budget 0: must be a positive whole number of tokens")

The UI shows the message as it is, the command line prints it on one line and exits 2: a message
says what was wrong and what to change.
"""

from __future__ import annotations


class InputError(ValueError):
    """User input that cannot be run; the message says what to change."""
