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
reads, sets or logs credentials.
"""

from __future__ import annotations

import logging
import os
from urllib.parse import urlsplit

__all__ = ["DEFAULTS", "ENDPOINT_VARS", "configure_gdal"]

log = logging.getLogger(__name__)

DEFAULTS: dict[str, str] = {
    # No directory listing on open: COGs carry their overviews and masks inside.
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    # Never probe for sidecars (.aux.xml, .ovr, .msk) over HTTP; VRT mosaic
    # indexes of compiled maps are read the same way, hence .vrt.
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.vrt,.VRT",
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
    "GDAL_CACHEMAX": "512",
    # Transient 429/5xx from object stores are retried instead of failing a tile.
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "1",
    # GDAL_NUM_THREADS is deliberately left unset (GDAL decompresses on the
    # calling thread): the cores belong to the model running beside the reader.
}

# boto3 reads the endpoint from AWS_ENDPOINT_URL(_S3); GDAL wants AWS_S3_ENDPOINT.
ENDPOINT_VARS = ("AWS_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


def configure_gdal() -> None:
    """Set GDAL's cloud-reading options where unset; safe to call any number of times.

    Entry points and every Ray actor call this at start, because a Ray worker
    is a fresh process that does not inherit the driver's ``os.environ``
    changes (only its runtime_env).

    S3-compatible stores on a custom endpoint (SeaweedFS, MinIO) need
    path-style addressing, and plain HTTP when the endpoint says ``http://``.
    GDAL expects ``AWS_S3_ENDPOINT`` as ``host:port`` without a scheme, so a
    URL (as boto3 takes it, possibly only in ``AWS_ENDPOINT_URL``) is
    translated: the scheme becomes ``AWS_HTTPS``, the rest the endpoint.
    """
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
