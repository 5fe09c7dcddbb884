"""Locations as URIs: a plain path or ``file://`` is local, ``s3://bucket/key`` is S3.

DESIGN.md: "everything written to a local path or s3:// alike", with the
endpoint, region and credentials taken from the environment and never written
anywhere. This module is the one place that knows how each library reaches an
``s3://`` URI:

- a Zarr store (:func:`zarr_store`): ``zarr.storage.ObjectStore`` over
  ``obstore``'s ``S3Store`` (path-style, plain HTTP allowed where the endpoint
  says ``http://``);
- small objects (:func:`read_bytes`, :func:`write_bytes_atomic`,
  :func:`exists`, :func:`exists_under`): boto3. One PUT replaces an object
  whole, so a reader sees the old bytes or the new, never a mix;
- rasterio/GDAL (:func:`gdal_path`, :func:`open_raster`): ``/vsis3/bucket/key``,
  with GDAL's options set by ``cluster.storage.gdalenv.configure_gdal``, and a
  bucket on another S3 service opened with its own endpoint and keys;
- pystac (:class:`S3StacIO`): reads and writes ``s3://`` hrefs, so a static
  catalog opens from S3 and its relative links resolve to ``s3://`` hrefs.

The environment, read on each call (a Ray worker is a fresh process with its
own): the endpoint from ``AWS_S3_ENDPOINT``, ``AWS_ENDPOINT_URL_S3`` or
``AWS_ENDPOINT_URL``, in the order GDAL's configuration uses
(``AWS_S3_ENDPOINT`` may be GDAL's ``host:port``; ``AWS_HTTPS=NO`` then means
plain HTTP); none means AWS itself. The region from ``AWS_REGION`` or
``AWS_DEFAULT_REGION`` (default ``us-east-1``). Credentials from
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``;
absent, each library's own chain applies (boto3: profiles, instance roles;
obstore: web identity, instance roles). Credentials are never put into
messages, logs, reprs or anything written, and are not passed to obstore
explicitly (it reads them from the environment itself), so a pickled store
carries none.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import rasterio
import rasterio.errors
from pystac.stac_io import DefaultStacIO
from zarr.storage import LocalStore, ObjectStore, WrapperStore

from cluster.errors import ClusterError
from cluster.storage.gdalenv import ENDPOINT_VARS, bucket_env, bucket_var

if TYPE_CHECKING:
    from rasterio.io import DatasetReader
    from zarr.abc.buffer import Buffer
    from zarr.abc.store import Store

__all__ = [
    "ObjectStoreError", "S3Settings", "S3StacIO", "exists", "exists_under", "gdal_path",
    "is_s3", "iter_under", "join", "local_path", "open_raster", "read_bytes", "s3_client",
    "split_s3", "write_bytes_atomic", "zarr_store",
]  # fmt: skip

_CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_FALSE = {"no", "false", "off", "0"}
_MISSING = {"404", "NoSuchKey", "NotFound"}
_DENIED = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}


class ObjectStoreError(ClusterError):
    """An object store refused or could not be reached; names the URI and what to check."""


# --- URIs -------------------------------------------------------------------------


def is_s3(uri: object) -> bool:
    return isinstance(uri, str) and uri[:5].lower() == "s3://"


def split_s3(uri: str) -> tuple[str, str]:
    """(bucket, key) of ``s3://bucket/key``; the key may be empty (the bucket's root)."""
    if not is_s3(uri):
        raise ClusterError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise ClusterError(f"{uri!r} names no bucket; write s3://bucket/key")
    return bucket, key.strip("/")


def join(uri: str, key: str) -> str:
    """``uri/key``: an object under a store or folder URI (``key=""`` is ``uri`` itself)."""
    if not key:
        return uri
    if is_s3(uri):
        return f"{uri.rstrip('/')}/{key.lstrip('/')}"
    return str(local_path(uri) / key)


def local_path(uri: str) -> Path:
    """The filesystem path of a plain-path or ``file://`` URI; other schemes are refused."""
    if not isinstance(uri, str) or not uri.strip():
        raise ClusterError(f"store URI must be a non-empty string, got {uri!r}")
    if "://" not in uri:
        return Path(uri)
    scheme = uri.split("://", 1)[0].lower()
    if scheme == "file":
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise ClusterError(
                f"URI {uri!r} names host {parts.netloc!r}; file:// URIs must be local "
                "(file:///absolute/path)"
            )
        return Path(url2pathname(parts.path))
    if scheme == "s3":
        raise ClusterError(f"URI {uri!r} is in object storage, not on a local disk")
    raise ClusterError(
        f"URI {uri!r} has unknown scheme {scheme!r}; give a local path, file:// or s3:// URI"
    )


# --- settings from the environment ---------------------------------------------------


@dataclass(frozen=True)
class S3Settings:
    """Endpoint and region in the clear; the credentials are kept out of ``repr``."""

    endpoint_url: str | None  # scheme://host[:port], None: AWS's own endpoints
    region: str
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> S3Settings:
        env = os.environ if environ is None else environ
        endpoint = None
        source = next((var for var in ENDPOINT_VARS if env.get(var, "").strip()), None)
        if source is not None:
            endpoint = env[source].strip().rstrip("/")
            if "://" not in endpoint:  # GDAL's host:port; AWS_HTTPS says which scheme
                https = env.get("AWS_HTTPS", "YES").strip().lower() not in _FALSE
                endpoint = f"{'https' if https else 'http'}://{endpoint}"
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        secrets = (env.get(k) or None for k in _CREDENTIAL_VARS)
        return cls(endpoint, region.strip(), *secrets)

    @property
    def http(self) -> bool:
        return self.endpoint_url is not None and self.endpoint_url.lower().startswith("http://")

    def where(self) -> str:
        """The endpoint for messages: scheme, host and port only (no user info)."""
        if self.endpoint_url is None:
            return f"AWS S3 ({self.region})"
        parts = urlsplit(self.endpoint_url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


# --- Zarr --------------------------------------------------------------------------


def zarr_store(uri: str, read_only: bool) -> Store:
    """A zarr v3 Store for ``uri``: ``LocalStore``, or ``ObjectStore`` over obstore's S3Store."""
    if not is_s3(uri):
        return LocalStore(local_path(uri), read_only=read_only)
    try:
        from obstore.store import S3Store
    except ImportError as exc:
        raise ClusterError(f"store {uri}: s3:// stores need obstore (pip install obstore)") from exc
    bucket, key = split_s3(uri)
    settings = S3Settings.from_env()
    config: dict[str, Any] = {"region": settings.region}
    if settings.endpoint_url is not None:
        # A custom endpoint (SeaweedFS, MinIO, Ceph) is path-style: bucket in the path.
        config.update(endpoint=settings.endpoint_url, virtual_hosted_style_request=False)
    store = S3Store(
        bucket,
        prefix=key or None,
        client_options={"allow_http": True} if settings.http else None,
        **config,
    )
    return _CreatesRetried(ObjectStore(store, read_only=read_only))


_CREATE_TRIES = 5


class _CreatesRetried(WrapperStore[ObjectStore]):
    """obstore retries a request that failed on the way (a reset connection, a response
    cut off) only where repeating it is harmless, which it does not assume of a
    conditional create (``If-None-Match: *``), zarr's way of writing a new group's
    metadata. Here it is harmless: a create that had landed answers "already exists"
    when repeated, which zarr takes as done. Only such failures are retried: an
    answer from the server (denied, no bucket) is final."""

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        from obstore.exceptions import GenericError

        for attempt in range(_CREATE_TRIES):
            try:
                return await self._store.set_if_not_exists(key, value)
            except GenericError:
                if attempt == _CREATE_TRIES - 1:
                    raise
                await asyncio.sleep(0.5 * 2**attempt * (1 + random.random()))


# --- small objects: boto3 ------------------------------------------------------------


def s3_client(settings: S3Settings | None = None) -> Any:
    """A boto3 S3 client for ``settings`` (default: from the environment), one per
    process and settings: clients are thread-safe and slow to make."""
    return _client(settings or S3Settings.from_env(), os.getpid())


_client_lock = threading.Lock()


@lru_cache(maxsize=8)
def _client(settings: S3Settings, pid: int) -> Any:
    import boto3
    from botocore.config import Config

    addressing = "path" if settings.endpoint_url is not None else "auto"
    config = Config(
        s3={"addressing_style": addressing},
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=10,
        read_timeout=60,
    )
    with _client_lock:  # boto3's default session is not thread-safe; a new one is
        return boto3.session.Session().client(
            "s3",
            endpoint_url=settings.endpoint_url,
            region_name=settings.region,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            aws_session_token=settings.session_token,
            config=config,
        )


def read_bytes(uri: str) -> bytes | None:
    """The object's bytes, or None when it does not exist."""
    if not is_s3(uri):
        try:
            return local_path(uri).read_bytes()
        except FileNotFoundError:
            return None
    bucket, key = split_s3(uri)
    with _errors(uri, "read"):
        try:
            return s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            if _code(exc) in _MISSING:
                return None
            raise


def write_bytes_atomic(uri: str, data: bytes) -> None:
    """Replace the object whole: readers see the old bytes or the new, never a mix.

    On S3 one PUT is atomic, so this is a plain PUT (boto3 adds a checksum the
    server verifies). Locally: temp file, fsync, ``os.replace``.
    """
    if not is_s3(uri):
        _write_local_atomic(local_path(uri), data)
        return
    bucket, key = split_s3(uri)
    if not key:
        raise ClusterError(f"{uri!r} names a bucket, not an object; give s3://bucket/key")
    with _errors(uri, "write"):
        s3_client().put_object(Bucket=bucket, Key=key, Body=bytes(data))


def _write_local_atomic(path: Path, data: bytes) -> None:
    import glob
    import uuid

    path.parent.mkdir(parents=True, exist_ok=True)
    for stray in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stray.unlink(missing_ok=True)  # left by a killed writer; there is only one writer
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def exists(uri: str) -> bool:
    """Whether the object (locally: the file or directory) ``uri`` exists."""
    if not is_s3(uri):
        return local_path(uri).exists()
    bucket, key = split_s3(uri)
    if not key:
        return exists_under(uri)
    with _errors(uri, "look up"):
        try:
            s3_client().head_object(Bucket=bucket, Key=key)
            return True
        except Exception as exc:
            if _code(exc) in _MISSING:
                return False
            raise


def exists_under(uri: str) -> bool:
    """Whether anything is stored at ``uri``: the object itself, or any object below it
    (locally: a file, or a directory that is not empty)."""
    if not is_s3(uri):
        path = local_path(uri)
        return any(path.iterdir()) if path.is_dir() else path.exists()
    bucket, key = split_s3(uri)
    if key and exists(uri):
        return True
    with _errors(uri, "list"):
        listed = s3_client().list_objects_v2(
            Bucket=bucket, Prefix=f"{key}/" if key else "", MaxKeys=1
        )
    return bool(listed.get("KeyCount") or listed.get("Contents"))


def iter_under(uri: str, suffix: str = "") -> Iterator[str]:
    """URIs of the objects (locally: files) below ``uri`` whose names end in
    ``suffix``, in key order; nothing when ``uri`` does not exist."""
    if not is_s3(uri):
        root = local_path(uri)
        if root.is_dir():
            for path in sorted(root.rglob(f"*{suffix}")):
                if path.is_file():
                    yield str(path)
        return
    bucket, key = split_s3(uri)
    prefix = f"{key.rstrip('/')}/" if key else ""
    with _errors(uri, "list"):
        pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                if obj["Key"].endswith(suffix):
                    yield f"s3://{bucket}/{obj['Key']}"


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return str((response or {}).get("Error", {}).get("Code", "")) if response else ""


@contextmanager
def _errors(uri: str, verb: str) -> Iterator[None]:
    """boto3's failures as ObjectStoreError naming the URI and the endpoint (never the
    credentials: botocore's messages carry none, and none are added here)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        code = _code(exc)
        if code == "NoSuchBucket":
            hint = "the bucket does not exist there: create it, or fix the URI"
        elif code in _DENIED:
            hint = "access denied: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the policy"
        elif "Credentials" in type(exc).__name__:
            hint = "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        else:
            hint = "check the endpoint (AWS_ENDPOINT_URL) and that the server is up"
        where = S3Settings.from_env().where()
        raise ObjectStoreError(f"cannot {verb} {uri} at {where}: {exc}; {hint}") from exc


# --- GDAL ----------------------------------------------------------------------------


def gdal_path(href: str) -> str:
    """What rasterio/GDAL opens for ``href``: ``s3://b/k`` -> ``/vsis3/b/k``, ``file://``
    -> its path, anything else unchanged. GDAL takes endpoint and credentials from the
    environment; ``cluster.storage.gdalenv.configure_gdal`` translates the endpoint for it."""
    if is_s3(href):
        bucket, key = split_s3(href)
        return f"/vsis3/{bucket}/{key}"
    if href[:7].lower() == "file://":
        return str(local_path(href))
    return href


# --- pystac --------------------------------------------------------------------------


class S3StacIO(DefaultStacIO):
    """pystac I/O that also reads and writes ``s3://`` hrefs (everything else as pystac
    does). pystac resolves relative links against an ``s3://`` self href into
    ``s3://`` hrefs, so a whole static catalog opens from a bucket."""

    def read_text_from_href(self, href: str) -> str:
        if not is_s3(href):
            return super().read_text_from_href(href)
        data = read_bytes(href)
        if data is None:
            raise FileNotFoundError(f"no object at {href}")
        return data.decode("utf-8")

    def write_text_to_href(self, href: str, txt: str) -> None:
        if not is_s3(href):
            super().write_text_to_href(href, txt)
            return
        write_bytes_atomic(href, txt.encode("utf-8"))


def open_raster(href: str, bucket_endpoints: Mapping[str, str] | None = None) -> DatasetReader:
    """``rasterio.open`` of ``href`` (:func:`gdal_path`); a file in a bucket on its own S3
    service (its ``STATEMAP_BUCKET_<NAME>_ENDPOINT_URL``, else ``bucket_endpoints``) is
    opened with that service's endpoint and keys (``gdalenv.bucket_env``)."""
    path = gdal_path(href)
    bucket = split_s3(href)[0] if is_s3(href) else ""
    own = bucket_env(bucket, (bucket_endpoints or {}).get(bucket)) if bucket else None
    if own is None:
        return rasterio.open(path)
    try:
        with own:
            return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        if not own.session.unsigned:
            raise
        raise rasterio.errors.RasterioIOError(
            f"{exc}; bucket {bucket} was asked without keys: set "
            f"{bucket_var(bucket, 'ACCESS_KEY_ID')} and {bucket_var(bucket, 'SECRET_ACCESS_KEY')} "
            "on the driver and workers"
        ) from None
