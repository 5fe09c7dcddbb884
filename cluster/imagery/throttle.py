"""Object storage under load: retries counted, and fewer requests in flight while throttled.

GDAL retries a failed HTTP request itself (``GDAL_HTTP_MAX_RETRY`` times, after
``GDAL_HTTP_RETRY_DELAY`` seconds, doubled with jitter each time; set in
``cluster.storage.gdalenv``): 429, 500, 502-504, a reset connection and a
response that stalls beyond ``GDAL_HTTP_TIMEOUT``. Only when all its tries
fail does the read fail, and with it only its tile. Each retry GDAL announces
as a warning (``HTTP error code: 503 - <url>. Retrying again in 1.0 secs``,
logged by rasterio), which is all a caller learns of it; :func:`watch` counts
those warnings per process (:func:`take` hands the counts on, for a run's
summary) and does not let them reach a log with their URL, which may carry a
signature.

A store that answers 429 or 503 (SlowDown) is asking for fewer requests,
which retrying each one after a pause alone does not give: the other requests
in flight keep coming. So the process's requests in flight are bounded by an
AIMD window (:class:`Window`, as TCP does with its congestion window): halved
on throttling, at most once per ``COOL_S`` (one burst of 503s is one signal),
and grown by one after as many throttle-free requests as it holds, up to the
configured ``run.requests_in_flight``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter

__all__ = ["COOL_S", "THROTTLE_CODES", "Window", "take", "watch", "window"]

THROTTLE_CODES = frozenset({429, 503})
COOL_S = 1.0  # the window is halved at most this often: GDAL's first retry delay
_RETRY = re.compile(r"HTTP error code: (\d+) - .*Retrying again in")
_GDAL_LOGGERS = ("rasterio._env", "rasterio._err")  # where rasterio logs GDAL's warnings
log = logging.getLogger(__name__)


class Window:
    """At most ``limit`` requests at once; the limit moves between 1 and ``most``."""

    def __init__(self, most: int) -> None:
        self._cond = threading.Condition()
        self.most = self.limit = self.lowest = most
        self.active = 0
        self._calm = 0  # requests finished since the last change
        self._last_cut = -COOL_S
        self.cuts = 0

    def resize(self, most: int) -> None:
        with self._cond:
            self.most = self.limit = self.lowest = most
            self._cond.notify_all()

    def acquire(self) -> None:
        with self._cond:
            while self.active >= self.limit:
                self._cond.wait()
            self.active += 1

    def release(self) -> None:
        with self._cond:
            self.active -= 1
            self._calm += 1
            if self._calm >= self.limit and self.limit < self.most:
                self.limit += 1
                self._calm = 0
            self._cond.notify()

    def throttled(self) -> None:
        """The store asked for fewer requests: halve the window, unless it was just halved."""
        with self._cond:
            now = time.monotonic()
            self._calm = 0
            if now - self._last_cut < COOL_S:
                return
            self._last_cut = now
            if self.limit > 1:
                self.limit = max(1, self.limit // 2)
                self.lowest = min(self.lowest, self.limit)
                self.cuts += 1

    def take_cuts(self) -> int:
        """Cuts since the last call."""
        with self._cond:
            cuts, self.cuts = self.cuts, 0
            return cuts


window = Window(1)  # the process's; sized by inflight.set_requests
_counts: Counter[str] = Counter()
_lock = threading.Lock()
_watching: list[_RetryCounter] = []


class _RetryCounter(logging.Filter):
    """Counts GDAL's retry warnings and keeps them out of the log (their URLs may be
    signed); every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        match = _RETRY.search(record.getMessage())
        if match is None:
            return True
        code = int(match.group(1))
        throttled = code in THROTTLE_CODES
        with _lock:
            _counts["retries"] += 1
            _counts["throttled"] += throttled
        if throttled:
            window.throttled()
        log.debug("object storage: a request retried after HTTP %s", code or "error (no answer)")
        return False


def watch() -> None:
    """Count GDAL's retries in this process from now on; safe to call again."""
    with _lock:
        if _watching:
            return
        _watching.append(_RetryCounter())
    for name in _GDAL_LOGGERS:
        logging.getLogger(name).addFilter(_watching[0])


def take() -> dict[str, int]:
    """Retries, throttled responses and window cuts since the last call, and reset."""
    with _lock:
        out = {"retries": _counts["retries"], "throttled": _counts["throttled"]}
        _counts.clear()
    out["slowed"] = window.take_cuts()
    return out
