"""One STAC item as plain JSON: filters, the records a reader gets, footprint.

Every source of items (a static catalog walked by pystac, a STAC API, a
single ItemCollection or ndjson file) is reduced to the item's JSON dict
(:class:`RawItem`), and everything a run decides about an item is decided
on that dict, once: here its period and footprint, in
``cluster.imagery.providers`` its bands, units and mask. So a run and
``statemap plan`` select the same items from any source, and the fast
sources stay fast: for a country's orthophotos (about 100,000 items)
``pystac.Item.from_dict`` alone costs 60 µs an item and pystac's asset
accessors 100 µs a band, while a dict that ``json`` has parsed costs
nothing more to read.

Footprints are reprojected in bulk (:func:`footprints`): one coordinate
transform for thousands of items instead of a ``transform_geom`` each
(measured 0.9 ms an item, against 35 µs in bulk, on the 2-core CI machine).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pystac
import pystac.utils
import shapely
from rasterio.crs import CRS
from rasterio.warp import transform
from shapely.errors import GEOSException

from cluster.errors import ClusterError

__all__ = [
    "BandSource",
    "ItemRef",
    "MaskSource",
    "RawItem",
    "collection_paused",
    "footprints",
    "geometry_json",
    "item_ref",
    "item_time",
    "passes",
    "project",
]

Range = tuple[dt.datetime | None, dt.datetime | None]
# Footprints are densified before reprojection: a straight lon/lat edge is
# curved in UTM, and a 110 km scene edge would otherwise be off by metres.
_DENSIFY_DEG = 0.01


@dataclass(frozen=True)
class BandSource:
    """Where one model band comes from in one item."""

    href: str  # absolute local path or URL (s3://, https://): rasterio opens either
    band_index: int  # 1-based index in that file
    scale: float = 1.0
    offset: float = 0.0
    nodata: float | None = None  # None: the file's own nodata, if it has one
    asset: str = ""  # asset key, for error messages
    origin: str = ""  # where scale and offset came from (metadata, a convention, the config)


@dataclass(frozen=True)
class MaskSource:
    """A per-pixel class raster (e.g. Sentinel-2 SCL): values in ``invalid`` are unusable,
    and so is every pixel within ``dilate_m`` of one in ``dilate`` (cloud and shadow,
    whose hazy rims the classification misses)."""

    href: str
    invalid: tuple[int, ...]
    asset: str = ""
    dilate: tuple[int, ...] = ()
    dilate_m: float = 0.0


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


@dataclass(frozen=True)
class RawItem:
    """A STAC item's JSON and the href its relative asset hrefs resolve against."""

    doc: Mapping[str, Any]
    base: str = ""  # the item's own href (or its file's); "" when it has none

    @classmethod
    def from_pystac(cls, item: pystac.Item) -> RawItem:
        doc = item.to_dict(include_self_link=False, transform_hrefs=False)
        return cls(doc, item.get_self_href() or "")

    @property
    def id(self) -> str:
        return str(self.doc.get("id", ""))

    @property
    def collection(self) -> str:
        return str(self.doc.get("collection") or "")

    # Plain ``dict`` checks, not ``Mapping``: an ABC check costs ten times more, and
    # a plan makes millions of them. JSON and pystac's to_dict give dicts.
    @property
    def properties(self) -> dict[str, Any]:
        props = self.doc.get("properties")
        return props if isinstance(props, dict) else {}

    @property
    def assets(self) -> dict[str, dict[str, Any]]:
        """The assets that are JSON objects (others are ignored, not refused)."""
        assets = self.doc.get("assets")
        if not isinstance(assets, dict):
            return {}
        if all(isinstance(a, dict) for a in assets.values()):
            return assets
        return {k: a for k, a in assets.items() if isinstance(a, dict)}

    def href(self, asset: Mapping[str, Any]) -> str:
        """Relative hrefs resolved against the item; local paths made absolute, so that
        an actor in another working directory opens the same file."""
        href = str(asset.get("href", ""))
        if self.base and "://" not in href and not os.path.isabs(href):
            href = pystac.utils.make_absolute_href(href, self.base)
        href = href.removeprefix("file://")
        return href if "://" in href else os.path.abspath(href)


def item_time(raw: RawItem) -> dt.datetime | None:
    """``datetime``, else ``start_datetime`` (a range item), as an aware UTC-or-offset time."""
    props = raw.properties
    text = props.get("datetime") or props.get("start_datetime")
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(str(text))
    except ValueError:
        try:  # the ISO forms fromisoformat lacks (e.g. a comma before fractions)
            moment = pystac.utils.str_to_datetime(str(text))
        except (ValueError, OverflowError) as exc:
            raise ClusterError(
                f"item {raw.id}: datetime {text!r} is not ISO 8601; fix the catalog"
            ) from exc
    return moment.replace(tzinfo=moment.tzinfo or dt.UTC)


def passes(raw: RawItem, wanted: set[str] | None, when: Range, max_cloud: float | None) -> bool:
    """The run's filters: collection, period (end exclusive), cloud cover (absent passes)."""
    if wanted is not None and raw.collection not in wanted:
        return False
    if when != (None, None):
        moment = item_time(raw)
        if moment is None or (when[0] and moment < when[0]) or (when[1] and moment >= when[1]):
            return False
    cloud = raw.properties.get("eo:cloud_cover")
    return max_cloud is None or cloud is None or float(cloud) <= max_cloud


def item_ref(
    raw: RawItem,
    resolved: tuple[tuple[BandSource, ...], MaskSource | None],
    footprint: shapely.Geometry,
) -> ItemRef:
    """The frozen record a reader gets, from the item's resolved bands, mask and footprint."""
    sources, mask = resolved
    moment, cloud = item_time(raw), raw.properties.get("eo:cloud_cover")
    iso = moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if moment else ""
    cloud = None if cloud is None else float(cloud)
    wkb = shapely.to_wkb(footprint)
    return ItemRef(raw.id, raw.collection, iso, cloud, wkb, sources, mask)


def footprints(raws: Sequence[RawItem], crs: CRS | str) -> np.ndarray:
    """Each item's geometry (else its bbox) in ``crs``, as a shapely array, in one go."""
    return project([geometry_json(raw) for raw in raws], [raw.id for raw in raws], crs)


def geometry_json(raw: RawItem) -> str:
    """The item's lon/lat geometry (else its bbox as a box) as GeoJSON text: compact to
    keep while the dict is dropped, and what GEOS parses in bulk."""
    geometry, bbox = raw.doc.get("geometry"), raw.doc.get("bbox")
    if not geometry and isinstance(bbox, list) and len(bbox) in (4, 6):
        corners = bbox if len(bbox) == 4 else bbox[:2] + bbox[3:5]  # 3D: drop heights
        geometry = shapely.box(*corners).__geo_interface__
    if not geometry:
        raise ClusterError(f"item {raw.id} has neither geometry nor bbox; add one to the catalog")
    return json.dumps(geometry)


def project(texts: Sequence[str], ids: Sequence[str], crs: CRS | str) -> np.ndarray:
    """Lon/lat GeoJSON geometries (of items ``ids``) as shapely geometries in ``crs``.

    Densified in lon/lat first (see ``_DENSIFY_DEG``), then every vertex of
    every item goes through one GDAL transform; invalid results are repaired.
    """
    if not texts:
        return np.empty(0, dtype=object)
    try:
        shapes = shapely.from_geojson(list(texts))
    except GEOSException:
        shapes = np.array([_one_geometry(i, text) for i, text in zip(ids, texts, strict=True)])
    shapes = shapely.segmentize(shapes, _DENSIFY_DEG)
    coords = shapely.get_coordinates(shapes)
    if len(coords):
        xs, ys = transform("EPSG:4326", crs, coords[:, 0], coords[:, 1])
        shapes = shapely.set_coordinates(shapes.copy(), np.column_stack([xs, ys]))
    finite = np.isfinite(shapely.bounds(shapes)).all(axis=1)
    if not finite.all():
        bad = ids[int(np.argmin(finite))]
        raise ClusterError(f"item {bad}: geometry has no place in {crs}; fix the catalog")
    invalid = ~shapely.is_valid(shapes)
    if invalid.any():
        shapes[invalid] = shapely.make_valid(shapes[invalid])
    return shapes


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """Cyclic garbage collection paused while items stream through.

    Parsing 100,000 items allocates millions of dicts and lists, and every
    full collection that triggers rescans all live objects, torch's and
    rasterio's included: the footprints of bench/plan.py's 93,000 items took
    17 s with collection on, 8 s without. JSON makes no reference cycles, so
    reference counting frees all of it anyway.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _one_geometry(item_id: str, text: str) -> shapely.Geometry:
    """The culprit of a failed bulk parse, named."""
    try:
        return shapely.from_geojson(text)
    except GEOSException as exc:
        raise ClusterError(f"item {item_id}: malformed geometry ({exc}); fix the catalog") from exc
