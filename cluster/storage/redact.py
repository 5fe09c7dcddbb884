"""Secrets out of every text that names a URL, before it is written anywhere.

An href or URL may carry what must not leave the process: a provider's
signature (Planetary Computer's SAS tokens, presigned S3 URLs), a token in a
catalog's query string, a password in an endpoint. statemap never stores the
signatures it makes (``cluster.imagery.signing`` adds them only as a file is
opened), but a user's own URLs may carry them, and GDAL's messages name the
signed URL it opened; so whatever writes a URL (messages, the run record, the
published config, the checkpoint's recipe) passes it through :func:`redact`, and
rasterio's loggers, which carry GDAL's messages, pass theirs through it too
(:func:`redact_logs`): with ``CPL_DEBUG`` on, GDAL names every signed URL it opens.
"""

from __future__ import annotations

import logging
import re

__all__ = ["REDACTED", "redact", "redact_logs"]

REDACTED = "REDACTED"
# Query parameters that are secrets, or parts of a signature that must not travel
# without it: SAS (Azure), presigned S3 (SigV4/SigV2), OAuth-style tokens.
_SECRET_PARAMS = (
    "sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|awsaccesskeyid"
    "|token|access_token|sas|code|key|password|skoid|sktid|skt|ske|sks|skv|saoid|suoid"
)
_SECRET_QUERY = re.compile(rf"(?i)([?&](?:{_SECRET_PARAMS})=)[^&#\s'\"<>]*")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s'\"<>]+@")
# Where rasterio logs: GDAL's errors and debug messages (_env, _err), opened paths.
GDAL_LOGGERS = ("rasterio", "rasterio._env", "rasterio._err", "rasterio._base", "rasterio._io",
                "rasterio._filepath", "rasterio._vsiopener", "rasterio.env")  # fmt: skip


def redact(text: str) -> str:
    """``text`` with every URL's signature, token and password replaced by ``REDACTED``."""
    text = _SECRET_QUERY.sub(rf"\g<1>{REDACTED}", text)
    return _USERINFO.sub(rf"\g<1>{REDACTED}@", text)


class _Redacting(logging.Filter):
    """Rewrites a record whose message names a secret; lets every record pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FILTER = _Redacting()


def redact_logs(names: tuple[str, ...] = GDAL_LOGGERS) -> None:
    """Redact what the loggers ``names`` log, in this process; safe to call again.

    A logger's filter sees only its own records, not its children's, hence every
    name. Costs nothing for records below the logger's level: none is made."""
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
