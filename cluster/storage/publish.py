"""Publish local output files (COGs, VRTs, catalogs) to a local folder or an s3:// prefix.

Every file is verified (size and SHA-256) and nothing half-written is ever
visible under its final name: a reader sees the old object or the new one.

On S3, per file:

1. HEAD the final key: the same size and ``sha256`` metadata means it is
   already there, and the upload is skipped (re-publishing is cheap; a run cut
   off half-way resumes where it stopped).
2. Upload to a temporary key ``<dest>/.statemap-partial/<uuid>/<key>`` with
   boto3's managed transfer (multipart past ``multipart_threshold``), the
   SHA-256 stored as object metadata ``sha256``.
3. Verify the temporary object: size and metadata by HEAD, and the bytes by a
   streamed GET hashed on the fly.
4. Server-side copy to the final key (``client.copy``: multipart copy where
   needed, so > 5 GB works), then verify the final object's size and metadata
   by HEAD. A copy becomes visible whole (CopyObject or CompleteMultipartUpload).
5. Delete the temporary object.

Transient failures (connection refused, endpoint down, timeouts, 5xx,
throttling, a verification mismatch) restart the file's attempt after a backoff,
for up to ``retry_seconds`` per file; then an ``ObjectStoreError`` names the
file, the destination URI and the endpoint (never credentials). Temporary keys
left by a killed publisher are under no final key; :func:`clean_partial`
(called once per ``publish``, best effort) removes those older than an hour.

Locally: a temp file in the destination folder, fsync, verification by
re-reading it, ``os.replace``; an existing file with the same bytes is left alone.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cluster.storage.objstore import (
    ObjectStoreError,
    S3Settings,
    is_s3,
    local_path,
    s3_client,
    split_s3,
)

__all__ = ["PARTIAL", "PublishError", "clean_partial", "publish", "sha256_file"]

log = logging.getLogger(__name__)

PARTIAL = ".statemap-partial"
MB = 1024 * 1024
_READ = 4 * MB
_TRANSIENT_CODES = {
    "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "Throttling",
    "RequestTimeTooSkewed", "OperationAborted", "503", "500", "502", "504",
}  # fmt: skip

Event = Callable[[str, str], None]  # (what: "uploaded" | "skipped", destination URI)


class PublishError(ObjectStoreError):
    """A published object does not match its file (size or SHA-256)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_READ):
            h.update(chunk)
    return h.hexdigest()


def publish(
    files: Sequence[Path],
    dest: str,
    *,
    base: Path | None = None,
    retry_seconds: float = 60.0,
    chunk_size: int = 8 * MB,
    max_concurrency: int = 4,
    progress: Callable[[int], None] | None = None,
    on_event: Event | None = None,
) -> list[str]:
    """Copy ``files`` to ``dest`` (a folder or an ``s3://`` prefix); returns their URIs.

    Keys are the paths relative to ``base`` (default: each file's name).
    ``progress`` gets the bytes sent as boto3 sends them (S3 only);
    ``on_event(what, uri)`` hears "uploaded" or "skipped" for each file.
    """
    dest = str(dest)
    keys = [_key(Path(f), base) for f in files]
    out: list[str] = []
    if is_s3(dest):
        bucket, prefix = split_s3(dest)
        try:
            clean_partial(dest)
        except Exception as exc:  # cleaning is a courtesy; publishing is the job
            log.info("could not clean %s/%s: %s", dest.rstrip("/"), PARTIAL, exc)
        for path, key in zip(files, keys, strict=True):
            full = f"{prefix}/{key}" if prefix else key
            uri = f"s3://{bucket}/{full}"
            args = (Path(path), bucket, full, uri, prefix, chunk_size, max_concurrency)
            _retrying(lambda a=args: _put_s3(*a, progress, on_event), args[0], uri, retry_seconds)
            out.append(uri)
    else:
        root = local_path(dest)
        for path, key in zip(files, keys, strict=True):
            target = root / key
            _put_local(Path(path), target, on_event)
            out.append(str(target))
    return out


def _key(path: Path, base: Path | None) -> str:
    if base is None:
        return path.name
    try:
        rel = path.resolve().relative_to(Path(base).resolve())
    except ValueError as exc:
        raise ObjectStoreError(f"cannot publish {path}: it is not under base {base}") from exc
    if PARTIAL in rel.parts:
        raise ObjectStoreError(f"cannot publish {path}: {PARTIAL} is reserved")
    return rel.as_posix()


# --- S3 ------------------------------------------------------------------------------


def _put_s3(
    path: Path, bucket: str, key: str, uri: str, prefix: str, chunk_size: int,
    max_concurrency: int, progress: Callable[[int], None] | None, on_event: Event | None,
) -> None:  # fmt: skip
    from boto3.s3.transfer import TransferConfig

    client = s3_client()
    size, digest = path.stat().st_size, sha256_file(path)
    if _matches(_head(client, bucket, key), size, digest):
        log.info("%s is already at %s (same sha256): skipped", path, uri)
        if on_event:
            on_event("skipped", uri)
        return
    config = TransferConfig(
        multipart_threshold=chunk_size, multipart_chunksize=chunk_size,
        max_concurrency=max_concurrency,
    )  # fmt: skip
    tmp = f"{prefix}/{PARTIAL}/{uuid.uuid4().hex}/{key[len(prefix) :].lstrip('/')}".lstrip("/")
    try:
        client.upload_file(
            str(path), bucket, tmp, Config=config, Callback=progress,
            ExtraArgs={"Metadata": {"sha256": digest}},
        )  # fmt: skip
        if not _matches(_head(client, bucket, tmp), size, digest):
            raise PublishError(f"uploaded {path} to a temporary key, size or metadata differ")
        if _stream_hash(client, bucket, tmp) != (size, digest):
            raise PublishError(f"uploaded {path} to a temporary key, bytes read back differ")
        client.copy(
            {"Bucket": bucket, "Key": tmp}, bucket, key, Config=config,
            ExtraArgs={"Metadata": {"sha256": digest}, "MetadataDirective": "REPLACE"},
        )  # fmt: skip
        if not _matches(_head(client, bucket, key), size, digest):
            raise PublishError(f"copied {path} to {uri}: size or metadata differ")
    finally:
        try:
            client.delete_object(Bucket=bucket, Key=tmp)
        except Exception as exc:  # the server may be down; clean_partial gets it later
            log.info("could not delete temporary s3://%s/%s: %s", bucket, tmp, exc)
    log.info("published %s to %s (%d bytes, sha256 %s)", path, uri, size, digest)
    if on_event:
        on_event("uploaded", uri)


def _head(client: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        return client.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if _code(exc) in {"404", "NoSuchKey", "NotFound"}:
            return None
        raise


def _matches(head: dict[str, Any] | None, size: int, digest: str) -> bool:
    if head is None:
        return False
    meta = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
    return head.get("ContentLength") == size and meta.get("sha256") == digest


def _stream_hash(client: Any, bucket: str, key: str) -> tuple[int, str]:
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    h, n = hashlib.sha256(), 0
    try:
        for chunk in body.iter_chunks(_READ):
            h.update(chunk)
            n += len(chunk)
    finally:
        body.close()
    return n, h.hexdigest()


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _transient(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:  # boto3 wraps ClientError in S3UploadFailed
        seen.add(id(exc))
        if isinstance(exc, PublishError | ConnectionError | HTTPClientError | OSError):
            return not isinstance(exc, FileNotFoundError | PermissionError)
        if isinstance(exc, ClientError):
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            return status >= 500 or _code(exc) in _TRANSIENT_CODES
        if "S3UploadFailedError" in type(exc).__name__ and exc.__cause__ is None:
            return any(f"({c})" in str(exc) for c in _TRANSIENT_CODES)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def _retrying(attempt: Callable[[], None], path: Path, uri: str, seconds: float) -> None:
    deadline, delay, tries = time.monotonic() + seconds, 0.5, 0
    while True:
        tries += 1
        try:
            attempt()
            return
        except Exception as exc:
            where = S3Settings.from_env().where()
            left = deadline - time.monotonic()
            if not _transient(exc) or left <= 0:
                why = f"gave up after {tries} tries in {seconds:.0f} s: " if left <= 0 else ""
                raise ObjectStoreError(
                    f"cannot publish {path} to {uri} at {where}: {why}{type(exc).__name__}: "
                    f"{exc}; check the endpoint (AWS_ENDPOINT_URL), that the server is up, "
                    "and the credentials' rights"
                ) from exc
            log.warning("publishing %s to %s failed (%s); retrying", path, uri, exc)
            time.sleep(min(delay, max(left, 0.0)))
            delay = min(delay * 2, 8.0)


def clean_partial(dest: str, older_than: float = 3600.0) -> int:
    """Delete temporary objects under ``dest/.statemap-partial/`` older than ``older_than``
    seconds (left by a killed publisher), and abort its multipart uploads as old.
    Returns how many objects were deleted."""
    bucket, prefix = split_s3(dest)
    start = f"{prefix}/{PARTIAL}/" if prefix else f"{PARTIAL}/"
    client, cutoff = s3_client(), datetime.now(UTC) - timedelta(seconds=older_than)
    gone = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=start):
        for entry in page.get("Contents", []):
            if entry["LastModified"] < cutoff:
                client.delete_object(Bucket=bucket, Key=entry["Key"])
                gone += 1
    uploads = client.list_multipart_uploads(Bucket=bucket, Prefix=start).get("Uploads", [])
    for up in uploads:
        if up["Initiated"] < cutoff:
            client.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
    return gone


# --- local ---------------------------------------------------------------------------


def _put_local(path: Path, target: Path, on_event: Event | None) -> None:
    size, digest = path.stat().st_size, sha256_file(path)
    if target.is_file() and target.stat().st_size == size and sha256_file(target) == digest:
        if on_event:
            on_event("skipped", str(target))
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    try:
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            while chunk := src.read(_READ):
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        if tmp.stat().st_size != size or sha256_file(tmp) != digest:
            raise PublishError(f"copied {path} to {target}: size or sha256 differ")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(target.parent, os.O_RDONLY)  # the rename itself durable
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if on_event:
        on_event("uploaded", str(target))
