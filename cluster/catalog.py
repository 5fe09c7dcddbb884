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
URIs, which the reader opens through GDAL's /vsis3/); a STAC API is searched
with pystac-client, imported only when a URI needs it.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pystac
import shapely
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import transform_bounds, transform_geom

from cluster import objstore
from cluster.errors import ClusterError
from cluster.region import Region

__all__ = ["SCL_INVALID", "BandSource", "Catalog", "ItemRef", "MaskSource"]

log = logging.getLogger(__name__)

Bounds = tuple[float, float, float, float]
Range = tuple[dt.datetime | None, dt.datetime | None]
# Sen2Cor scene classes without usable surface reflectance:
# 0 no data, 1 saturated/defective, 3 cloud shadow, 8/9 cloud, 10 thin cirrus.
SCL_INVALID: tuple[int, ...] = (0, 1, 3, 8, 9, 10)
# classification:classes names that make a pixel of a data-mask asset unusable.
_INVALID_CLASS = re.compile(r"no.?data|saturat|defect|cloud|shadow|cirrus", re.IGNORECASE)
# Footprints are densified before reprojection: a straight lon/lat edge is
# curved in UTM, and a 110 km scene edge would otherwise be off by metres.
_DENSIFY_DEG = 0.01
_SKIP_ROLES = {"thumbnail", "overview", "metadata", "visual"}


@dataclass(frozen=True)
class BandSource:
    """Where one model band comes from in one item."""

    href: str  # absolute local path or URL (s3://, https://): rasterio opens either
    band_index: int  # 1-based index in that file
    scale: float = 1.0
    offset: float = 0.0
    nodata: float | None = None  # None: the file's own nodata, if it has one
    asset: str = ""  # asset key, for error messages


@dataclass(frozen=True)
class MaskSource:
    """A per-pixel class raster (e.g. Sentinel-2 SCL): values in ``invalid`` are unusable."""

    href: str
    invalid: tuple[int, ...]
    asset: str = ""


@dataclass(frozen=True)
class ItemRef:
    """Everything a reader needs about one item, resolved once on the driver."""

    id: str
    collection: str
    datetime: str  # ISO 8601, UTC
    cloud_cover: float | None
    footprint_wkb: bytes  # item geometry in the grid's CRS (shapely WKB)
    bands: tuple[BandSource, ...]  # in the order of the requested band names
    mask: MaskSource | None


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
    ) -> Catalog:
        """Read, filter and resolve a catalog; refuse it if it cannot serve ``bands``.

        ``uri``: a static catalog (catalog.json or collection.json, or a folder
        holding one), or a STAC API root (http(s):// not ending in .json; it
        needs ``region``, in the grid CRS, to bound the search). ``start``,
        ``end``: ISO dates or datetimes, inclusive (a bare end date includes
        its whole day). ``max_cloud_cover`` in percent; items without
        eo:cloud_cover pass. Every item passing the filters must carry every
        band: the first that doesn't is an error naming it.
        """
        if isinstance(bands, str) or not bands or len({b.lower() for b in bands}) != len(bands):
            raise ClusterError(f"bands must be a list of distinct band names, got {bands!r}")
        try:
            crs = CRS.from_user_input(grid_crs)
        except CRSError as exc:
            raise ClusterError(
                f"grid CRS {grid_crs!r} is not a CRS rasterio knows ({exc})"
            ) from exc
        when = (_time(start, "start", False), _time(end, "end", True))
        if when[0] and when[1] and when[0] >= when[1]:
            raise ClusterError(f"start {start!r} is after end {end!r}; swap them")
        if max_cloud_cover is not None and not 0 <= max_cloud_cover <= 100:
            raise ClusterError(f"max_cloud_cover={max_cloud_cover!r} must be a percentage, 0..100")
        filters = ", ".join(
            [f"collections={list(collections)}" if collections is not None else "all collections"]
            + ([f"dates {start or '..'} to {end or '..'}"] if start or end else [])
            + ([f"eo:cloud_cover <= {max_cloud_cover:g}"] if max_cloud_cover is not None else [])
        )
        wanted = None if collections is None else set(collections)
        if uri.lower().startswith(("http://", "https://")) and not uri.lower().endswith(".json"):
            source = _api_items(uri, collections, when, max_cloud_cover, region)
        else:
            source = list(_static_items(uri, wanted))
        refs: dict[str, ItemRef] = {}
        for item in source:
            # An item linked twice (or two collections holding one scene) must not be
            # mosaicked twice: the first met, in walk order, is kept.
            if item.id not in refs and _passes(item, wanted, when, max_cloud_cover):
                refs[item.id] = _resolve(item, tuple(bands), crs)
        if not refs:
            raise ClusterError(
                f"catalog {uri}: none of its {len(source)} items pass the filters ({filters}); "
                "widen the date range or cloud limit, or check the collection ids"
            )
        log.info("catalog %s: %d of %d items kept (%s)", uri, len(refs), len(source), filters)
        return cls(list(refs.values()), uri, grid_crs, filters)

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


def _static_items(uri: str, wanted: set[str] | None) -> Iterable[pystac.Item]:
    path = uri.removeprefix("file://")
    if objstore.is_s3(path):
        if not path.lower().endswith(".json"):  # a "folder": the catalog.json in it
            names = ("catalog.json", "collection.json")
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
    try:
        obj = pystac.read_file(path, stac_io=objstore.S3StacIO())
    except (OSError, ValueError, KeyError, TypeError, pystac.STACError) as exc:
        raise ClusterError(f"catalog {uri}: cannot be read as STAC ({exc})") from exc
    if not isinstance(obj, pystac.Catalog):
        raise ClusterError(f"catalog {uri}: a {type(obj).__name__}, not a catalog or collection")
    return _walk(obj, wanted)


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


def _passes(
    item: pystac.Item, wanted: set[str] | None, when: Range, max_cloud: float | None
) -> bool:
    if wanted is not None and item.collection_id not in wanted:
        return False
    if when != (None, None):
        moment = _item_time(item)
        if moment is None or (when[0] and moment < when[0]) or (when[1] and moment >= when[1]):
            return False
    cloud = item.properties.get("eo:cloud_cover")
    return max_cloud is None or cloud is None or float(cloud) <= max_cloud


def _item_time(item: pystac.Item) -> dt.datetime | None:
    moment = item.datetime or item.common_metadata.start_datetime
    return moment.replace(tzinfo=moment.tzinfo or dt.UTC) if moment else None


def _resolve(item: pystac.Item, bands: tuple[str, ...], crs: CRS) -> ItemRef:
    sources = []
    for name in bands:
        found = _find_band(item, name)
        if found is None:
            raise ClusterError(
                f"item {item.id} (collection {item.collection_id}) has no band {name!r}; its "
                f"bands are {_inventory(item)}. The checkpoint's bands {list(bands)} must all "
                "be in every item: restrict collections= to ones carrying them, or use a "
                "checkpoint trained on bands this catalog has"
            )
        sources.append(found)
    moment, cloud = _item_time(item), item.properties.get("eo:cloud_cover")
    iso = moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if moment else ""
    cloud = None if cloud is None else float(cloud)
    footprint = shapely.to_wkb(_footprint(item, crs))
    mask = _find_mask(item)
    return ItemRef(item.id, item.collection_id or "", iso, cloud, footprint, tuple(sources), mask)


def _asset_bands(asset: pystac.Asset) -> list[dict[str, Any]]:
    """Per band of the file, eo:bands, raster:bands and STAC 1.1 ``bands`` merged."""
    groups = [asset.extra_fields.get(k) or [] for k in ("bands", "raster:bands", "eo:bands")]
    return [
        {k: v for g in groups if i < len(g) and isinstance(g[i], Mapping) for k, v in g[i].items()}
        for i in range(max(map(len, groups)))
    ]


def _names(band: Mapping[str, Any]) -> set[str]:
    return {str(band[k]).lower() for k in ("common_name", "eo:common_name", "name") if k in band}


def _find_band(item: pystac.Item, name: str) -> BandSource | None:
    """The best asset band called ``name``: an asset keyed by the name beats one matched
    by eo:bands; a single-band file beats a band of a multiband one (a uint8 "visual"
    preview also lists red); a GeoTIFF beats a JPEG2000 copy; then the key decides."""
    want, best = name.lower(), None
    for key, asset in item.assets.items():
        roles = set(asset.roles or ())
        if roles & _SKIP_ROLES and "data" not in roles:
            continue
        described = _asset_bands(asset) or [{}]
        index = 0 if key.lower() == want and len(described) == 1 else -1
        index = next((i for i, b in enumerate(described) if want in _names(b)), index)
        if index < 0:
            continue
        media = (asset.media_type or "").lower()
        rank = (key.lower() != want, len(described) > 1, "tif" not in media, key)
        if best is None or rank < best[0]:
            best = (rank, key, asset, index, described[index])
    if best is None:
        return None
    _, key, asset, index, meta = best

    def number(field: str, default: float | None) -> float | None:
        raw = meta.get(field, meta.get(f"raster:{field}"))
        try:
            return default if raw is None else float(raw)
        except (TypeError, ValueError) as exc:
            raise ClusterError(
                f"item {item.id} asset {key!r} band {index + 1}: {field}={raw!r} is not a "
                "number; fix the catalog's raster:bands"
            ) from exc

    scale, offset = number("scale", 1.0) or 0.0, number("offset", 0.0) or 0.0
    return BandSource(_absolute_href(asset), index + 1, scale, offset, number("nodata", None), key)


def _find_mask(item: pystac.Item) -> MaskSource | None:
    """Sentinel-2's SCL (by key; Sen2Cor classes), or a data-mask asset naming its
    classes (classification extension): those classed no data, cloud, shadow, ..."""
    for key, asset in item.assets.items():
        raster = (asset.extra_fields.get("raster:bands") or [{}])[0] or {}
        classes = asset.extra_fields.get(
            "classification:classes", raster.get("classification:classes")
        )
        if classes and (key.lower() == "scl" or "data-mask" in (asset.roles or ())):
            text = ((int(c["value"]), f"{c.get('name')} {c.get('description')}") for c in classes)
            invalid = tuple(sorted(v for v, t in text if _INVALID_CLASS.search(t)))
            return MaskSource(_absolute_href(asset), invalid, key)
        if key.lower() == "scl":
            return MaskSource(_absolute_href(asset), SCL_INVALID, key)
    return None


def _absolute_href(asset: pystac.Asset) -> str:
    """Relative hrefs resolved against the item; local paths made absolute, so that
    an actor in another working directory opens the same file."""
    href = (asset.get_absolute_href() or asset.href).removeprefix("file://")
    return href if "://" in href else os.path.abspath(href)


def _inventory(item: pystac.Item) -> str:
    names = {
        k: sorted({n for b in _asset_bands(a) for n in _names(b)}) for k, a in item.assets.items()
    }
    return "[" + "; ".join(f"{k} ({', '.join(n)})" if n else k for k, n in names.items()) + "]"


def _footprint(item: pystac.Item, crs: CRS) -> shapely.Geometry:
    geometry = item.geometry or (item.bbox and shapely.box(*item.bbox[:2], *item.bbox[-2:]))
    if not geometry:
        raise ClusterError(f"item {item.id} has neither geometry nor bbox; add one to the catalog")
    try:
        lonlat = shapely.segmentize(shapely.geometry.shape(geometry), _DENSIFY_DEG)
        shape = shapely.geometry.shape(transform_geom("EPSG:4326", crs, lonlat.__geo_interface__))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise ClusterError(f"item {item.id}: malformed geometry ({exc}); fix the catalog") from exc
    return shape if shape.is_valid else shapely.make_valid(shape)


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
