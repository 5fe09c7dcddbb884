"""Secrets out of every text that names a URL, before it is written anywhere.

An href or URL may carry what must not leave the process: a provider's
signature (Planetary Computer's SAS tokens, presigned S3 URLs), a token in a
catalog's query string, a password in an endpoint. statemap never stores the
signatures it makes (``cluster.imagery.signing`` adds them only as a file is
opened), but a user's own URLs may carry them, and GDAL's messages name the
signed URL it opened; so whatever writes a URL (messages, the run record, the
published config, the checkpoint's recipe) passes it through :func:`redact`.
"""

from __future__ import annotations

import re

__all__ = ["REDACTED", "redact"]

REDACTED = "REDACTED"
# Query parameters that are secrets, or parts of a signature that must not travel
# without it: SAS (Azure), presigned S3 (SigV4/SigV2), OAuth-style tokens.
_SECRET_PARAMS = (
    "sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|awsaccesskeyid"
    "|token|access_token|sas|code|key|password|skoid|sktid|skt|ske|sks|skv|saoid|suoid"
)
_SECRET_QUERY = re.compile(rf"(?i)([?&](?:{_SECRET_PARAMS})=)[^&#\s'\"<>]*")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s'\"<>]+@")


def redact(text: str) -> str:
    """``text`` with every URL's signature, token and password replaced by ``REDACTED``."""
    text = _SECRET_QUERY.sub(rf"\g<1>{REDACTED}", text)
    return _USERINFO.sub(rf"\g<1>{REDACTED}@", text)
