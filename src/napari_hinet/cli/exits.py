"""Exit codes of every ``napari-hinet`` subcommand and the exceptions that lead to them.

What each code means is tabled in :mod:`napari_hinet.cli` (also in ``docs/reliability.md``).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_SPACE = 3
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class UsageError(Exception):
    """A problem with the command line; reported with exit code 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM received (a batch scheduler ending the job); handled like Ctrl-C."""
