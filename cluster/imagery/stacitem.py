"""One STAC item as plain JSON: filters, band sources, cloud mask, footprint.

Every source of items (a static catalog walked by pystac, a STAC API, a
single ItemCollection or ndjson file) is reduced to the item's JSON dict
(:class:`RawItem`), and everything a run decides about an item is decided
here, once, on that dict. So a run and ``statemap plan`` select the same
items from any source, and the fast sources stay fast: for a country's
orthophotos (about 100,000 items) ``pystac.Item.from_dict`` alone costs
60 µs an item and pystac's asset accessors 100 µs a band, while a dict that
``json`` has parsed costs nothing more to read.

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
import re
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
    "SCL_INVALID",
    "BandSource",
    "ItemRef",
    "MaskSource",
    "RawItem",
    "band_assets",
    "band_sources",
    "collection_paused",
    "footprints",
    "geometry_json",
    "item_ref",
    "item_time",
    "passes",
    "project",
]

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


def band_sources(raw: RawItem, bands: Sequence[str]) -> tuple[BandSource, ...]:
    """Each band's source in the item, in the order of ``bands``; the first band the
    item lacks is an error naming the item, the band and what the item has."""
    return tuple(_source(raw, *pick) for pick in _pick_bands(raw, bands))


def band_assets(raw: RawItem, bands: Sequence[str]) -> list[str]:
    """The keys of the assets ``band_sources`` would read, each once, refusing the same
    items; without resolving hrefs or scales (for a plan: a third of the cost)."""
    return list(dict.fromkeys(key for key, _, _ in _pick_bands(raw, bands)))


def item_ref(raw: RawItem, sources: tuple[BandSource, ...], footprint: shapely.Geometry) -> ItemRef:
    """The frozen record a reader gets, from the item's resolved bands and footprint."""
    moment, cloud = item_time(raw), raw.properties.get("eo:cloud_cover")
    iso = moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if moment else ""
    cloud = None if cloud is None else float(cloud)
    wkb = shapely.to_wkb(footprint)
    return ItemRef(raw.id, raw.collection, iso, cloud, wkb, sources, _find_mask(raw))


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


def _usable(asset: dict[str, Any]) -> bool:
    """Whether an asset may hold model bands: previews and metadata may not, unless
    they say they are data."""
    roles = set(asset.get("roles") or ())
    return not (roles & _SKIP_ROLES and "data" not in roles)


def _asset_bands(asset: dict[str, Any]) -> list[dict[str, Any]]:
    """Per band of the file, eo:bands, raster:bands and STAC 1.1 ``bands`` merged."""
    groups = [asset.get(k) for k in ("bands", "raster:bands", "eo:bands")]
    groups = [g for g in groups if isinstance(g, list) and g]
    if len(groups) == 1:  # the common case: no merging to do
        return [b if isinstance(b, dict) else {} for b in groups[0]]
    return [
        {k: v for g in groups if i < len(g) and isinstance(g[i], dict) for k, v in g[i].items()}
        for i in range(max(map(len, groups), default=0))
    ]


def _names(band: dict[str, Any]) -> set[str]:
    return {str(band[k]).lower() for k in ("common_name", "eo:common_name", "name") if k in band}


def _pick_bands(raw: RawItem, bands: Sequence[str]) -> list[tuple[str, int, dict[str, Any]]]:
    """(asset key, 0-based band index, band metadata) per band; a missing band is refused."""
    assets = raw.assets
    described = {
        key: [(meta, _names(meta)) for meta in _asset_bands(asset) or [{}]]
        for key, asset in assets.items()
        if _usable(asset)
    }
    out = []
    for name in bands:
        found = _find_band(assets, described, name.lower())
        if found is None:
            raise ClusterError(
                f"item {raw.id} (collection {raw.collection or None}) has no band {name!r}; its "
                f"bands are {_inventory(raw)}. The checkpoint's bands {list(bands)} must all "
                "be in every item: restrict collections= to ones carrying them, or use a "
                "checkpoint trained on bands this catalog has"
            )
        out.append(found)
    return out


def _find_band(
    assets: dict[str, dict[str, Any]],
    described: dict[str, list[tuple[dict[str, Any], set[str]]]],
    want: str,
) -> tuple[str, int, dict[str, Any]] | None:
    """The best asset band called ``want``: an asset keyed by the name beats one matched
    by eo:bands; a single-band file beats a band of a multiband one (a uint8 "visual"
    preview also lists red); a GeoTIFF beats a JPEG2000 copy; then the key decides."""
    best = None
    for key, bands in described.items():
        index = 0 if key.lower() == want and len(bands) == 1 else -1
        index = next((i for i, (_, names) in enumerate(bands) if want in names), index)
        if index < 0:
            continue
        media = str(assets[key].get("type") or "").lower()
        rank = (key.lower() != want, len(bands) > 1, "tif" not in media, key)
        if best is None or rank < best[0]:
            best = (rank, key, index, bands[index][0])
    return None if best is None else best[1:]


def _source(raw: RawItem, key: str, index: int, meta: dict[str, Any]) -> BandSource:
    def number(field: str, default: float | None) -> float | None:
        value = meta.get(field, meta.get(f"raster:{field}"))
        try:
            return default if value is None else float(value)
        except (TypeError, ValueError) as exc:
            raise ClusterError(
                f"item {raw.id} asset {key!r} band {index + 1}: {field}={value!r} is not a "
                "number; fix the catalog's raster:bands"
            ) from exc

    scale, offset = number("scale", 1.0) or 0.0, number("offset", 0.0) or 0.0
    href = raw.href(raw.assets[key])
    return BandSource(href, index + 1, scale, offset, number("nodata", None), key)


def _find_mask(raw: RawItem) -> MaskSource | None:
    """Sentinel-2's SCL (by key; Sen2Cor classes), or a data-mask asset naming its
    classes (classification extension): those classed no data, cloud, shadow, ..."""
    for key, asset in raw.assets.items():
        raster = (asset.get("raster:bands") or [{}])[0] or {}
        classes = asset.get("classification:classes", raster.get("classification:classes"))
        if classes and (key.lower() == "scl" or "data-mask" in (asset.get("roles") or ())):
            text = ((int(c["value"]), f"{c.get('name')} {c.get('description')}") for c in classes)
            invalid = tuple(sorted(v for v, t in text if _INVALID_CLASS.search(t)))
            return MaskSource(raw.href(asset), invalid, key)
        if key.lower() == "scl":
            return MaskSource(raw.href(asset), SCL_INVALID, key)
    return None


def _inventory(raw: RawItem) -> str:
    names = {
        k: sorted({n for b in _asset_bands(a) for n in _names(b)}) for k, a in raw.assets.items()
    }
    return "[" + "; ".join(f"{k} ({', '.join(n)})" if n else k for k, n in names.items()) + "]"
