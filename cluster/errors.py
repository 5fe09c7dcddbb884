"""The package's exceptions.

Every error a user can cause (a bad config, a broken file, a grid that does
not fit the region) derives from ``ClusterError``, so the command line can
catch one class and print the message instead of a traceback. A message names
the culprit (the file, the field, the tile id) and says what would fix it.
"""

from __future__ import annotations


class ClusterError(ValueError):
    """A problem with the user's input, stated as culprit + fix.

    A ``ValueError`` so that callers who validate with the standard idiom
    (``except ValueError``) still catch it.
    """
