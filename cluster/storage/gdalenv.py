"""GDAL's cloud-reading options, set once per process before the first read.

A tile read touches a few kilobytes of each of a dozen remote COGs. With
GDAL's defaults every open lists the remote "directory" (one LIST request per
file, slow and sometimes forbidden), probes for sidecar files (.aux.xml,
.ovr, .msk: a HEAD request each) and issues one request per range. The options
below make an open cost about one GET for the header and a read one merged
range request, which is what keeps end-to-end throughput near model-only
throughput.

Options go into ``os.environ`` (GDAL reads config options from the
environment on each use), and only where the user has not set them: a value
exported in the shell or the job's runtime_env always wins. Nothing here
logs credentials.

Some imagery lives on another S3 service than the run's own storage: the
Copernicus Data Space serves Sentinel-2 from ``s3://eodata`` on its own
endpoint, with its own keys. Such a bucket gets its endpoint and keys from
``STATEMAP_BUCKET_<NAME>_*`` variables (:func:`bucket_env`), applied only
while a file of that bucket is opened; the run's ``AWS_*`` settings stay for
everything else.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from urllib.parse import urlsplit

import rasterio
from rasterio.session import AWSSession

from cluster.storage.redact import redact_logs

__all__ = [
    "BUCKET_FIELDS",
    "DEFAULTS",
    "ENDPOINT_VARS",
    "bucket_env",
    "bucket_var",
    "configure_gdal",
]

log = logging.getLogger(__name__)

DEFAULTS: dict[str, str] = {
    # No directory listing on open: COGs carry their overviews and masks inside.
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    # Never probe for sidecars (.aux.xml, .ovr, .msk) over HTTP; VRT mosaic
    # indexes of compiled maps are read the same way, hence .vrt.
    # JPEG2000 too: the Copernicus Data Space serves Sentinel-2 as ESA's .jp2 files.
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.vrt,.VRT,.jp2,.JP2",
    # Fetch the scattered tiles of one window in one request.
    "GDAL_HTTP_MULTIRANGE": "YES",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    # Headers and neighbouring tiles read once per file, not once per window.
    "VSI_CACHE": "TRUE",
    # ... but bounded per open file (default 25 MB): the reader keeps dozens open.
    "VSI_CACHE_SIZE": "5000000",
    # One COG header (with its tile index) in the first request.
    "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
    # Block cache in MB; a per-process figure, so actors sharing a node share it sanely.
    # Imagery reads keep their decoded blocks in cluster.imagery.blocks, shared by all
    # handles of a file; GDAL's, per handle, only needs to hold one read's blocks.
    "GDAL_CACHEMAX": "128",
    # Transient 429/5xx, reset connections and timeouts are retried instead of failing
    # a tile: 5 times, after 1 s, then about 2, 4, 8 and 16 (GDAL doubles the delay,
    # with jitter); cluster.imagery.throttle counts them and slows down on 429/503.
    "GDAL_HTTP_MAX_RETRY": "5",
    "GDAL_HTTP_RETRY_DELAY": "1",
    # A response that stalls is cut and retried: a ranged read of a few MB takes well
    # under a second in a region, 30 s is a dead one.
    "GDAL_HTTP_TIMEOUT": "30",
    "GDAL_HTTP_CONNECTTIMEOUT": "10",
    # GDAL_NUM_THREADS is deliberately left unset (GDAL decompresses on the
    # calling thread): the cores belong to the model running beside the reader.
}

# boto3 reads the endpoint from AWS_ENDPOINT_URL(_S3); GDAL wants AWS_S3_ENDPOINT.
ENDPOINT_VARS = ("AWS_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
# STATEMAP_BUCKET_<NAME>_<FIELD>: a bucket on its own S3 service.
BUCKET_FIELDS = ("ENDPOINT_URL", "REGION", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN")


def configure_gdal() -> None:
    """Set GDAL's cloud-reading options where unset, and keep secrets out of GDAL's
    logged messages; safe to call any number of times.

    Entry points and every Ray actor call this at start, because a Ray worker
    is a fresh process that does not inherit the driver's ``os.environ``
    changes (only its runtime_env).

    S3-compatible stores on a custom endpoint (SeaweedFS, MinIO) need
    path-style addressing, and plain HTTP when the endpoint says ``http://``.
    GDAL expects ``AWS_S3_ENDPOINT`` as ``host:port`` without a scheme, so a
    URL (as boto3 takes it, possibly only in ``AWS_ENDPOINT_URL``) is
    translated: the scheme becomes ``AWS_HTTPS``, the rest the endpoint.
    """
    redact_logs()  # GDAL's messages name the signed URLs it opens
    applied = {key: value for key, value in DEFAULTS.items() if _setdefault(key, value)}
    applied.update(_configure_s3_endpoint())
    if applied:
        # Only the option names and values above: no credential ever passes here.
        log.debug("GDAL options set: %s", applied)


def _setdefault(key: str, value: str) -> bool:
    if key in os.environ:
        return False
    os.environ[key] = value
    return True


def _configure_s3_endpoint() -> dict[str, str]:
    source = next((var for var in ENDPOINT_VARS if os.environ.get(var)), None)
    if source is None:
        return {}
    endpoint = os.environ[source].strip()
    applied: dict[str, str] = {}
    if "://" in endpoint:
        parts = urlsplit(endpoint)
        host = parts.netloc + parts.path.rstrip("/")
        if parts.scheme.lower() == "http" and _setdefault("AWS_HTTPS", "NO"):
            applied["AWS_HTTPS"] = "NO"
        elif parts.scheme.lower() == "https" and _setdefault("AWS_HTTPS", "YES"):
            applied["AWS_HTTPS"] = "YES"
        if source == "AWS_S3_ENDPOINT" or "AWS_S3_ENDPOINT" not in os.environ:
            os.environ["AWS_S3_ENDPOINT"] = host
            applied["AWS_S3_ENDPOINT"] = host
    elif source != "AWS_S3_ENDPOINT" and _setdefault("AWS_S3_ENDPOINT", endpoint):
        applied["AWS_S3_ENDPOINT"] = endpoint
    # A custom endpoint is almost never a bucket-per-hostname service.
    if _setdefault("AWS_VIRTUAL_HOSTING", "FALSE"):
        applied["AWS_VIRTUAL_HOSTING"] = "FALSE"
    return applied


def bucket_var(bucket: str, field: str) -> str:
    """``STATEMAP_BUCKET_<NAME>_<FIELD>``: the bucket name upper-cased, ``-`` and ``.``
    as ``_`` (``eodata`` -> ``STATEMAP_BUCKET_EODATA_ENDPOINT_URL``)."""
    name = "".join(c if c.isalnum() else "_" for c in bucket.upper())
    return f"STATEMAP_BUCKET_{name}_{field}"


def bucket_env(bucket: str, default_endpoint: str | None = None) -> rasterio.Env | None:
    """The GDAL environment for opening files of ``bucket`` when it is on its own S3
    service (``STATEMAP_BUCKET_<NAME>_ENDPOINT_URL``, else ``default_endpoint``); None
    when it is on the run's own storage. Its keys come only from its own variables:
    without them requests go unsigned, so the run's keys never reach another service."""
    env = os.environ
    endpoint = (env.get(bucket_var(bucket, "ENDPOINT_URL")) or default_endpoint or "").strip()
    if not endpoint:
        return None
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    key, secret, token = (
        env.get(bucket_var(bucket, field)) or None
        for field in ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN")
    )
    session = _session(
        parts.netloc + parts.path.rstrip("/"),
        env.get(bucket_var(bucket, "REGION")) or "default",
        (key, secret, token) if key and secret else None,
    )
    options = {"AWS_HTTPS": "NO" if parts.scheme.lower() == "http" else "YES",
               "AWS_VIRTUAL_HOSTING": "FALSE"}  # fmt: skip
    if token is None:
        options["AWS_SESSION_TOKEN"] = ""  # not the run's own token
    return rasterio.Env(session=session, **options)


@lru_cache(maxsize=16)
def _session(endpoint: str, region: str, keys: tuple[str, str, str | None] | None) -> AWSSession:
    """One per bucket service and keys: a boto3 session costs milliseconds to make."""
    if keys is None:
        return AWSSession(aws_unsigned=True, region_name=region, endpoint_url=endpoint)
    key, secret, token = keys
    return AWSSession(
        aws_unsigned=False, aws_access_key_id=key, aws_secret_access_key=secret,
        aws_session_token=token, region_name=region, endpoint_url=endpoint,
    )  # fmt: skip
