"""Which catalog items feed each tile, and where each model band lives in them.

A run opens the catalog once, on the driver, and resolves everything a reader
needs into small frozen records (:class:`ItemRef`): per requested band the
file, band index, scale, offset and nodata; the item's cloud mask; its
footprint in the grid's CRS. Resolving up front means a checkpoint whose bands
a catalog lacks is refused before any actor starts, and actors receive plain
records instead of re-parsing STAC per tile.

Items are kept in one deterministic mosaic order (least cloud first, then
newest, then id), so every tile mosaics the same way in every run, and a
spatial index answers "which items meet this tile" in microseconds. A state's
worth of Sentinel-2 scenes is a few thousand records: small enough to hold.

Static catalogs are walked with pystac, on a local disk or in S3
(``s3://bucket/.../catalog.json``; its relative hrefs then resolve to s3://
URIs, which the reader opens through GDAL's /vsis3/); a single ItemCollection
or ndjson file of items is parsed with ``json`` (see ``cluster.imagery.itemcollection``:
the form for a country's 100,000 orthophoto tiles); a STAC API is searched
with pystac-client, imported only when a URI needs it. Whatever the source,
:class:`Selection` decides which items a run uses, so ``statemap plan``
counts exactly what a run would read.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pystac
import shapely
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import transform_bounds

from cluster.errors import ClusterError
from cluster.imagery.itemcollection import NDJSON_SUFFIXES, read_items
from cluster.imagery.providers import NO_OVERRIDES, Overrides, resolve
from cluster.imagery.stacitem import (
    ItemRef,
    RawItem,
    collection_paused,
    footprints,
    item_ref,
    passes,
)
from cluster.storage import objstore
from cluster.tiles.region import Region

__all__ = ["COMPOSITING", "MOSAIC", "Catalog", "Selection", "chunks"]

log = logging.getLogger(__name__)
# How a tile's pixels come from its items, as a checkpoint's input recipe records
# it: a model trained on pixels made one way is refused on pixels made another.
MOSAIC = "least cloud first, then newest, then id; per pixel the first clear item"
COMPOSITING = "first"

Bounds = tuple[float, float, float, float]
Range = tuple[dt.datetime | None, dt.datetime | None]
# Items resolved per bulk footprint transform: large enough to amortise the
# call, small enough that the raw JSON of one chunk is a few tens of MB.
CHUNK = 10_000


class Selection:
    """The items of a catalog that a run uses, streamed in walk order: those passing
    the filters, the first of each id. Arguments are checked on creation.

    ``seen`` counts the items met so far, passing or not, ``kept`` those passed on.
    """

    def __init__(
        self,
        uri: str,
        bands: Sequence[str],
        grid_crs: str,
        *,
        collections: Sequence[str] | None = None,
        start: str | None = None,
        end: str | None = None,
        max_cloud_cover: float | None = None,
        region: Region | None = None,
    ) -> None:
        if isinstance(bands, str) or not bands or len({b.lower() for b in bands}) != len(bands):
            raise ClusterError(f"bands must be a list of distinct band names, got {bands!r}")
        try:
            self.crs = CRS.from_user_input(grid_crs)
        except CRSError as exc:
            raise ClusterError(
                f"grid CRS {grid_crs!r} is not a CRS rasterio knows ({exc})"
            ) from exc
        self.when = (_time(start, "start", False), _time(end, "end", True))
        if self.when[0] and self.when[1] and self.when[0] >= self.when[1]:
            raise ClusterError(f"start {start!r} is after end {end!r}; swap them")
        if max_cloud_cover is not None and not 0 <= max_cloud_cover <= 100:
            raise ClusterError(f"max_cloud_cover={max_cloud_cover!r} must be a percentage, 0..100")
        self.filters = ", ".join(
            [f"collections={list(collections)}" if collections is not None else "all collections"]
            + ([f"dates {start or '..'} to {end or '..'}"] if start or end else [])
            + ([f"eo:cloud_cover <= {max_cloud_cover:g}"] if max_cloud_cover is not None else [])
        )
        self.uri, self.bands, self.region = uri, tuple(bands), region
        self.collections = None if collections is None else list(collections)
        self.max_cloud_cover = max_cloud_cover
        self.seen = self.kept = 0

    def __iter__(self) -> Iterator[RawItem]:
        uri, wanted = self.uri, None if self.collections is None else set(self.collections)
        if uri.lower().startswith(("http://", "https://")) and not uri.lower().endswith(".json"):
            api = _api_items(uri, self.collections, self.when, self.max_cloud_cover, self.region)
            source: Iterable[RawItem] = map(RawItem.from_pystac, api)
        else:
            source = _static_items(uri, wanted)
        kept: set[str] = set()
        for raw in source:
            self.seen += 1
            # An item linked twice (or two collections holding one scene) must not be
            # mosaicked twice: the first met, in walk order, is kept.
            if raw.id not in kept and passes(raw, wanted, self.when, self.max_cloud_cover):
                kept.add(raw.id)
                self.kept += 1
                yield raw

    def nothing_passes(self) -> ClusterError:
        return ClusterError(
            f"catalog {self.uri}: none of its {self.seen} items pass the filters "
            f"({self.filters}); widen the date range or cloud limit, or check the collection ids"
        )


def chunks(items: Iterable[RawItem], size: int = CHUNK) -> Iterator[list[RawItem]]:
    """Consecutive lists of ``size`` items (the last shorter), for bulk footprints."""
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


class Catalog:
    """The filtered items of a STAC catalog in mosaic order, with a spatial index.

    Picklable (shapely's STRtree is), so it may travel to Ray workers, though
    sending ``items_for`` results per tile is lighter.
    """

    def __init__(self, items: Sequence[ItemRef], uri: str, grid_crs: str, filters: str) -> None:
        self.uri, self.grid_crs, self.filters = uri, grid_crs, filters
        self.items: tuple[ItemRef, ...] = tuple(sorted(items, key=_mosaic_key))
        self._footprints = shapely.from_wkb([i.footprint_wkb for i in self.items])
        self._tree = shapely.STRtree(self._footprints)

    @classmethod
    def open(
        cls,
        uri: str,
        bands: Sequence[str],
        grid_crs: str,
        *,
        collections: Sequence[str] | None = None,
        start: str | None = None,
        end: str | None = None,
        max_cloud_cover: float | None = None,
        region: Region | None = None,
        overrides: Overrides = NO_OVERRIDES,
        units: str = "reflectance",
    ) -> Catalog:
        """Read, filter and resolve a catalog; refuse it if it cannot serve ``bands``.

        ``uri``: a static catalog (catalog.json or collection.json, or a folder
        holding one), an ItemCollection (.json) or ndjson file of items, or a
        STAC API root (http(s):// not ending in .json; it needs ``region``, in
        the grid CRS, to bound the search). ``start``, ``end``: ISO dates or
        datetimes, inclusive (a bare end date includes its whole day).
        ``max_cloud_cover`` in percent; items without eo:cloud_cover pass.
        Every item passing the filters must carry every band: the first that
        doesn't is an error naming it. ``overrides`` (from a config) say where
        bands, units and masks are in collections statemap does not know;
        ``units`` are those the checkpoint was trained on (``"dn"``: as stored).
        """
        selection = Selection(
            uri, bands, grid_crs, collections=collections, start=start, end=end,
            max_cloud_cover=max_cloud_cover, region=region,
        )  # fmt: skip
        refs: list[ItemRef] = []
        with collection_paused():
            for chunk in chunks(selection):
                resolved = [resolve(raw, selection.bands, overrides, units) for raw in chunk]
                shapes = footprints(chunk, selection.crs)
                refs += map(item_ref, chunk, resolved, shapes)
        if not refs:
            raise selection.nothing_passes()
        log.info("catalog %s: %d of %d items kept (%s)", uri, len(refs), selection.seen,
                 selection.filters)  # fmt: skip
        return cls(refs, uri, grid_crs, selection.filters)

    def __len__(self) -> int:
        return len(self.items)

    def items_for(self, bounds: Bounds) -> list[ItemRef]:
        """Items whose footprint shares area with ``bounds`` (grid CRS), in mosaic order.

        Footprints merely touching the box would contribute no pixel: left out.
        """
        box = shapely.box(*bounds)
        hits = self._tree.query(box, predicate="intersects")
        hits = hits[~shapely.touches(self._footprints[hits], box)]
        return [self.items[i] for i in np.sort(hits)]

    def check_covers(self, region: Region) -> None:
        """Refuse, before any work, a region that no item of this catalog meets."""
        if CRS.from_user_input(region.crs) != CRS.from_user_input(self.grid_crs):
            raise ClusterError(
                f"{region.source}: region is in {region.crs} but catalog {self.uri} was opened "
                f"for grid CRS {self.grid_crs}; load the region in the grid's CRS"
            )
        if len(self._tree.query(region.geometry, predicate="intersects")) == 0:
            box = ", ".join(f"{v:.0f}" for v in region.bounds)
            raise ClusterError(
                f"catalog {self.uri}: none of its {len(self)} items ({self.filters}) meets "
                f"region {region.source} (bounds {box} in {region.crs}); point the run at a "
                "catalog of that area, or widen the filters"
            )


def _mosaic_key(ref: ItemRef) -> tuple[float, float, str, str]:
    """Least cloud first (unknown counts as clear), then newest, then id: a total order."""
    stamp = _time(ref.datetime, "datetime", False).timestamp() if ref.datetime else -math.inf
    return (ref.cloud_cover or 0.0, -stamp, ref.id, ref.collection)


def _static_items(uri: str, wanted: set[str] | None) -> Iterable[RawItem]:
    path = uri.removeprefix("file://")
    if objstore.is_s3(path):
        if not path.lower().endswith((".json", ".geojson", *NDJSON_SUFFIXES)):
            names = ("catalog.json", "collection.json")  # a "folder": the catalog.json in it
            found = (objstore.join(path, n) for n in names)
            path = next((p for p in found if objstore.exists(p)), "")
            if not path:
                raise ClusterError(f"catalog {uri}: no catalog.json there; give its s3:// URI")
    elif "://" not in path:
        path = os.path.abspath(path)
        for name in ("catalog.json", "collection.json"):
            if os.path.isdir(path) and os.path.isfile(os.path.join(path, name)):
                path = os.path.join(path, name)
        if not os.path.isfile(path):
            raise ClusterError(f"catalog {uri}: no such file; give the path of catalog.json")
    if "://" not in path or objstore.is_s3(path):
        items = read_items(path)
        if items is not None:
            return items
    try:
        obj = pystac.read_file(path, stac_io=objstore.S3StacIO())
    except (OSError, ValueError, KeyError, TypeError, pystac.STACError) as exc:
        raise ClusterError(f"catalog {uri}: cannot be read as STAC ({exc})") from exc
    if isinstance(obj, pystac.Item):  # one item file: a catalog of one
        return [RawItem.from_pystac(obj)]
    if not isinstance(obj, pystac.Catalog):
        raise ClusterError(f"catalog {uri}: a {type(obj).__name__}, not a catalog or collection")
    return map(RawItem.from_pystac, _walk(obj, wanted))


def _walk(catalog: pystac.Catalog, wanted: set[str] | None) -> Iterable[pystac.Item]:
    """Depth first, in link order; collections not asked for are not even read."""
    if not (isinstance(catalog, pystac.Collection) and wanted and catalog.id not in wanted):
        yield from catalog.get_items()
    for child in catalog.get_children():
        if not (isinstance(child, pystac.Collection) and wanted and child.id not in wanted):
            yield from _walk(child, wanted)


def _api_items(
    uri: str,
    collections: Sequence[str] | None,
    when: Range,
    cloud: float | None,
    region: Region | None,
) -> list[pystac.Item]:
    """Search server-side by collections, region bbox, dates and cloud cover; the same
    filters run again client-side, so static catalogs and APIs select alike."""
    if region is None:
        raise ClusterError(
            f"catalog {uri} is a STAC API: pass region= to bound the search to it "
            "(an unbounded search would page through the whole archive)"
        )
    try:
        from pystac_client import Client
    except ImportError as exc:
        raise ClusterError(f"catalog {uri} is a STAC API: pip install pystac-client") from exc
    bbox = transform_bounds(region.crs, "EPSG:4326", *region.bounds, densify_pts=21)
    search: dict[str, Any] = {"bbox": list(bbox), "collections": collections}
    if when != (None, None):
        search["datetime"] = "/".join(t.isoformat() if t else ".." for t in when)
    if cloud is not None:
        search["query"] = {"eo:cloud_cover": {"lte": cloud}}
    try:
        return list(Client.open(uri).search(**search).items())
    except Exception as exc:  # APIError, requests' errors, JSON errors: all "search failed"
        raise ClusterError(f"catalog {uri}: STAC API search failed ({exc})") from exc


def _time(text: str | None, what: str, end: bool) -> dt.datetime | None:
    """UTC instant of an ISO date/datetime; an ``end`` is exclusive, one step past it
    (a bare date: the next midnight, so the whole day is included)."""
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ClusterError(f"{what} {text!r} is not ISO 8601; give e.g. 2023-06-01") from exc
    moment = moment.replace(tzinfo=moment.tzinfo or dt.UTC)
    if end:
        moment += dt.timedelta(days=1) if len(text) <= 10 else dt.timedelta(microseconds=1)
    return moment
