"""The one base exception of the ``jobs`` package, and the guard every entry
point runs under.

The guard lives here, not in ``jobs.cli``, because both the ``statemap``
command and each ``python -m jobs.<name>`` entry point use it: the command
imports the entry points, so they must not import the command back.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from cluster.errors import ClusterError
from unet.errors import UNetError


class ConfigError(ValueError):
    """A job config or command-line argument is wrong; the message names the
    field (or file) and the fix."""


def guarded(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Known errors end the command with their message and exit code 2, no traceback."""
    try:
        return run(args)
    except (ClusterError, ConfigError, UNetError) as exc:
        print(f"statemap: error: {exc}", file=sys.stderr)
        return 2
