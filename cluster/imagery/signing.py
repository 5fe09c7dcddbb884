"""Hrefs of providers that sign them: Planetary Computer's blobs, read with a SAS token.

Planetary Computer's imagery lies in Azure Blob Storage containers that answer
only a request carrying a shared access signature (SAS). Its token endpoint
hands one per storage account and container (``GET {token_url}/{account}/
{container}``, answering ``{"token": "sv=...&sig=...", "msft:expiry": "..."}``),
valid for about an hour; the blob's href with ``?{token}`` appended is then
readable. The convention, as Planetary Computer's own client has it: every href
on ``*.blob.core.windows.net`` is signed (``STATEMAP_SAS_TOKEN_URL`` names
another endpoint); an Azure emulator or a private mirror whose hrefs are
path-style (``http://host:port/{account}/{container}/...``) is signed when its
``host:port`` is listed in ``STATEMAP_SAS_HOSTS`` (comma-separated).

Items keep their plain hrefs: a reader signs at the moment it opens a file
(:func:`sign`), so no token is ever stored in an item, a message or a record,
and each process (driver, every reader) fetches and caches its own tokens,
renewing one shortly before it expires (:data:`RENEW_S`, or half its life
when it is shorter). A dataset opened with a token is not reused past the
token's renewal (``inflight.dataset`` compares the expiry it was opened with).

GDAL's messages name the signed URL it opened: ``cluster.storage.redact`` takes
the signature out before such a message is used.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from cluster.errors import ClusterError
from cluster.storage.redact import redact

__all__ = ["PC_TOKEN_URL", "RENEW_S", "SigningError", "sign", "signer"]

PC_TOKEN_URL = "https://planetarycomputer.microsoft.com/api/sas/v1/token"
RENEW_S = 300.0  # renew a token this long before it expires (PC's live about an hour)
_TIMEOUT_S = 30.0
_AZURE_SUFFIX = ".blob.core.windows.net"


class SigningError(ClusterError):
    """A token for a signed provider's container could not be had."""


@dataclass(frozen=True)
class _Token:
    token: str
    expires: float  # epoch seconds
    renew_at: float


class Signer:
    """Tokens of one token endpoint, cached per (account, container)."""

    def __init__(self, token_url: str, hosts: frozenset[str]) -> None:
        self.token_url, self.hosts = token_url.rstrip("/"), hosts
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._lock = threading.Lock()
        self._fetching: dict[tuple[str, str], threading.Lock] = {}
        self.fetched = 0  # tokens fetched by this process

    def container(self, href: str) -> tuple[str, str] | None:
        """(account, container) of a href this signer signs, else None."""
        if "://" not in href or href.startswith(("s3://", "file://")):
            return None
        parts = urlsplit(href)
        host, path = parts.netloc.lower(), parts.path.lstrip("/").split("/")
        if host.endswith(_AZURE_SUFFIX) and len(path) >= 2:
            return host[: -len(_AZURE_SUFFIX)], path[0]
        if host in self.hosts and len(path) >= 3:  # path-style: /account/container/blob
            return path[0], path[1]
        return None

    def sign(self, href: str) -> tuple[str, float | None]:
        """The href to open, and the expiry of the token in it (None: not signed)."""
        key = self.container(href)
        if key is None:
            return href, None
        token = self._token(key)
        joiner = "&" if "?" in href else "?"
        return f"{href}{joiner}{token.token}", token.expires

    def _token(self, key: tuple[str, str]) -> _Token:
        with self._lock:
            token = self._tokens.get(key)
            if token is not None and time.time() < token.renew_at:
                return token
            fetching = self._fetching.setdefault(key, threading.Lock())
        with fetching:  # one fetch per container at a time; the others wait for it
            with self._lock:
                token = self._tokens.get(key)
            if token is not None and time.time() < token.renew_at:
                return token
            token = self._fetch(*key)
            with self._lock:
                self._tokens[key] = token
                self.fetched += 1
            return token

    def _fetch(self, account: str, container: str) -> _Token:
        url = f"{self.token_url}/{account}/{container}"
        where = f"a SAS token for container {container} of account {account} from {url}"
        try:
            with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
                doc = json.loads(response.read())
            token, expiry = str(doc["token"]), str(doc["msft:expiry"])
            expires = dt.datetime.fromisoformat(expiry.replace("Z", "+00:00")).timestamp()
        except urllib.error.HTTPError as exc:
            why = f"HTTP {exc.code} {exc.reason}; check STATEMAP_SAS_TOKEN_URL and the container"
            raise SigningError(f"{where}: {why}") from None
        except (urllib.error.URLError, OSError) as exc:
            why = f"{redact(str(exc))}; check that STATEMAP_SAS_TOKEN_URL is reachable"
            raise SigningError(f"{where}: {why} from every node") from None
        except (ValueError, KeyError, TypeError) as exc:
            why = f"not a token endpoint's answer ({type(exc).__name__} {exc})"
            raise SigningError(f"{where}: {why}; check STATEMAP_SAS_TOKEN_URL") from None
        now = time.time()
        if expires <= now:
            raise SigningError(f"{where}: the token had expired when it came ({expiry}); "
                               "check the clocks of this node and the endpoint")  # fmt: skip
        return _Token(token, expires, expires - min(RENEW_S, (expires - now) / 2))


_signers: dict[tuple[str, frozenset[str]], Signer] = {}
_signers_lock = threading.Lock()


def signer() -> Signer:
    """This process's signer, as the environment configures it now."""
    url = os.environ.get("STATEMAP_SAS_TOKEN_URL") or PC_TOKEN_URL
    raw = os.environ.get("STATEMAP_SAS_HOSTS", "")
    hosts = frozenset(h.strip().lower() for h in raw.split(",") if h.strip())
    with _signers_lock:
        found = _signers.get((url, hosts))
        if found is None:
            found = _signers[(url, hosts)] = Signer(url, hosts)
        return found


def sign(href: str) -> tuple[str, float | None]:
    """:meth:`Signer.sign` with this process's signer."""
    return signer().sign(href)
