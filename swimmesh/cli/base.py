"""What every command shares: exit codes, the one-line error, the control plane default."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from ..agentconfig import parse_duration
from ..config import ConfigError
from ..errors import SwimmeshError

EXIT_OK, EXIT_ERROR, EXIT_TIMEOUT = 0, 1, 2
EXIT_INTERRUPTED = 130
"""Ctrl+C during a one-shot command (128 + SIGINT). A ``--watch`` or ``demo --keep`` ends
with Ctrl+C by design and exits 0."""
DEFAULT_URL = "http://127.0.0.1:7947"


class CliError(SwimmeshError):
    """A command failed; ``main`` prints ``error: <message>`` and exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def parse_timeout(text: str) -> float:
    """``--timeout`` in the configuration's duration formats (500ms, 5s, 00:00:05)."""
    try:
        return parse_duration(text, "--timeout")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@contextmanager
def quiet_logger(name: str, level: int = logging.ERROR) -> Iterator[None]:
    """Raise ``name``'s log level for a block and restore it after (``main`` also runs inside
    other programs and tests, whose logging must not change)."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)
