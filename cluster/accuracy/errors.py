"""The accuracy package's one exception.

``AccuracyError`` lives in its own module so that every module of the package
(estimators, sample sizes, the sample design) can raise it without importing
one another. It is a ``ClusterError`` and so a ``ValueError``: the command line
prints its message instead of a traceback, and callers who validate with
``except ValueError`` still catch it.
"""

from __future__ import annotations

from cluster.errors import ClusterError

__all__ = ["AccuracyError"]


class AccuracyError(ClusterError):
    """A sample, stratum table or design that the estimators cannot use as given.

    The message names the culprit (the sample unit, the stratum, the class) and
    says what would fix it.
    """
