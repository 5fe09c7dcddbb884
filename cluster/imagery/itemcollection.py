"""STAC items from one file: an ItemCollection (GeoJSON FeatureCollection) or ndjson.

Why a single file: a country's orthophotos are around 100,000 items, and a
static catalog of one JSON file per item costs pystac 1.2 ms an item to walk
(measured: 3,000 items in 3.6 s on the 2-core CI machine), nearly two
minutes for Germany before a run or a plan even starts. One file parsed with
``json`` costs about 75 µs an item. Both forms are what users already have:
a STAC API search saved as an ItemCollection, stac-geoparquet's and pgstac's
newline-delimited exports (``.ndjson``).

Items stream: ndjson line by line, a FeatureCollection feature by feature
(when its ``type`` comes before ``features``, as pystac, STAC APIs and
GeoPandas write it), so memory holds the file's text and one item's dict,
not 100,000 dicts. Relative asset hrefs resolve against the item's self link,
else against the file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

from cluster.errors import ClusterError
from cluster.imagery.stacitem import RawItem
from cluster.storage import objstore

__all__ = ["NDJSON_SUFFIXES", "read_items"]

NDJSON_SUFFIXES = (".ndjson", ".jsonl", ".geojsonl")
_SPACE = re.compile(r"\s*")
_DECODER = json.JSONDecoder()


def read_items(uri: str) -> Iterator[RawItem] | None:
    """The items of the ItemCollection or ndjson file at ``uri`` (a local path or
    s3://), or None when the file is JSON of another kind (a catalog or
    collection, for pystac) or not JSON at all (pystac then says why)."""
    if uri.lower().endswith(NDJSON_SUFFIXES):
        return _ndjson(uri)
    data = objstore.read_bytes(uri)
    if data is None:
        raise ClusterError(f"catalog {uri}: no such file; give the path of catalog.json")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    del data
    found = _feature_start(text)
    if found is None:
        return None
    head, start = found
    if head.get("type") == "FeatureCollection" and start is not None:
        return _stream_features(text, start, uri)
    if "type" in head:
        return None
    try:  # "type" written after "features": parse whole, the rare case
        doc = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        return None
    features = doc.get("features")
    return (_item(f, uri, f"feature {i}") for i, f in enumerate(features or []))


def _ndjson(uri: str) -> Iterator[RawItem]:
    """One item per line; blank lines are skipped. Local files are read line by line."""
    if objstore.is_s3(uri):
        data = objstore.read_bytes(uri)
        if data is None:
            raise ClusterError(f"catalog {uri}: no such object; check the s3:// URI")
        lines: Any = data.decode("utf-8").splitlines()
        yield from _lines(lines, uri)
        return
    path = objstore.local_path(uri)
    if not path.is_file():
        raise ClusterError(f"catalog {uri}: no such file; give the path of the .ndjson file")
    with path.open(encoding="utf-8") as lines:
        yield from _lines(lines, str(path.resolve()))


def _lines(lines: Any, uri: str) -> Iterator[RawItem]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ClusterError(
                f"catalog {uri}: line {number} is not JSON ({exc}); each line must be one STAC item"
            ) from exc
        yield _item(doc, uri, f"line {number}")


def _feature_start(text: str) -> tuple[dict[str, Any], int | None] | None:
    """The top-level members before ``features`` and where its array starts (None if it
    has none), reading no further; None when the text is not a JSON object."""
    try:
        i = _skip(text, 0)
        if text[i : i + 1] != "{":
            return None
        head: dict[str, Any] = {}
        i = _skip(text, i + 1)
        while text[i : i + 1] != "}":
            key, i = _DECODER.raw_decode(text, i)
            i = _skip(text, i)
            if text[i : i + 1] != ":":
                return None
            i = _skip(text, i + 1)
            if key == "features":
                return head, i
            head[key], i = _DECODER.raw_decode(text, i)
            i = _skip(text, i)
            if text[i : i + 1] == ",":
                i = _skip(text, i + 1)
        return head, None
    except (json.JSONDecodeError, IndexError):
        return None


def _skip(text: str, i: int) -> int:
    """The index of the first non-blank character from ``i``."""
    match = _SPACE.match(text, i)
    return match.end() if match else i


def _stream_features(text: str, start: int, uri: str) -> Iterator[RawItem]:
    """Decode the ``features`` array at ``start`` one feature at a time."""
    if text[start : start + 1] != "[":
        raise ClusterError(f"catalog {uri}: 'features' is not a list; fix the file")
    i, n = _skip(text, start + 1), 0
    while text[i : i + 1] != "]":
        try:
            doc, i = _DECODER.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise ClusterError(
                f"catalog {uri}: feature {n} is not valid JSON ({exc}); fix the file"
            ) from exc
        yield _item(doc, uri, f"feature {n}")
        n += 1
        i = _skip(text, i)
        if text[i : i + 1] == ",":
            i = _skip(text, i + 1)
        elif text[i : i + 1] != "]":
            raise ClusterError(f"catalog {uri}: features end without ']' near byte {i}")


def _item(doc: Any, uri: str, where: str) -> RawItem:
    if not isinstance(doc, dict) or doc.get("type") != "Feature" or not doc.get("id"):
        kind = doc.get("type") if isinstance(doc, dict) else type(doc).__name__
        raise ClusterError(
            f"catalog {uri}: {where} is a {kind!s}, not a STAC item (a Feature with an id); "
            "each entry must be one item"
        )
    links = doc.get("links") or []
    selfs = (k.get("href") for k in links if isinstance(k, dict) and k.get("rel") == "self")
    self_link = next(selfs, None)
    if self_link and ("://" in str(self_link) or os.path.isabs(str(self_link))):
        base = str(self_link)
    else:
        base = uri if objstore.is_s3(uri) else os.path.abspath(uri)
    return RawItem(doc, base)
