"""A static STAC collection over a run's compiled COGs.

``write_output_catalog`` writes ``collection.json`` under ``out_dir`` and one
item per map part (``<part>/<part>.json``). An item holds the part's class
COG, confidence COG and quality COG (two bands: clear observations used,
filled flag; absent for a store made before the quality layer) as assets,
with the projection and raster extensions (grid, nodata 255, uint8,
resolution; the quality bands named) and, on the class asset, the
classification extension (class values, names, colours and the nodata class).
Geometry and bbox are the COG's bounds in EPSG:4326. Items and collection link
to the run's store (``derived_from``), checkpoint and config (``via``) and
carry ``statemap:run_id``. A VRT mosaic, when the map was split into parts, is
a collection-level asset.

Deterministic: no wall-clock time is written. The period is ``start``/``end``
(ISO 8601 dates or datetimes, UTC unless an offset is given; a date-only
``end`` means the end of that day); one of them alone is the items' single
datetime. Without either, the class COG's ``TIFFTAG_DATETIME`` tag is used if
present, else ``ClusterError`` asks for the period. Local hrefs (assets and
run links) are written relative to each JSON file, so the tree can be moved
or uploaded as a whole. The catalog validates offline with
``cluster.imagery.stacvalidate.validate_catalog``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pystac
import rasterio
from rasterio.warp import transform as warp_transform

from cluster.errors import ClusterError
from cluster.maps.compile import class_tags
from cluster.predict import quality
from cluster.predict.store import NODATA

__all__ = ["CLASSIFICATION_SCHEMA", "cog_parts", "write_output_catalog"]

PROJECTION_SCHEMA = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER_SCHEMA = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
# v1.1.0, not pystac's default v2.0.0: the one whose schema is vendored.
CLASSIFICATION_SCHEMA = "https://stac-extensions.github.io/classification/v1.1.0/schema.json"
_COG = "image/tiff; application=geotiff; profile=cloud-optimized"
_VRT = "application/xml"  # a GDAL VRT document; no registered media type
_LICENSE = "proprietary"
_EDGE_POINTS = 4  # per side of the footprint, so a reprojected edge keeps its curve


def _parse_time(value: str, *, end: bool) -> datetime:
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(day, time.max if end else time.min, UTC)
            return moment.replace(microsecond=0)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ClusterError(
            f"{'end' if end else 'start'} must be an ISO 8601 date or datetime, got {value!r}"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _period(start: str | None, end: str | None, tags: dict[str, str]) -> tuple[datetime, ...]:
    if start is None and end is None:
        stamp = tags.get("TIFFTAG_DATETIME")
        if not stamp:
            raise ClusterError(
                "the output catalog needs the map's period: pass start and/or end "
                "(ISO 8601, e.g. start='2024-04-01', end='2024-09-30')"
            )
        try:
            return (datetime.strptime(stamp, "%Y:%m:%d %H:%M:%S").replace(tzinfo=UTC),)
        except ValueError:
            raise ClusterError(f"TIFFTAG_DATETIME {stamp!r} is not 'YYYY:MM:DD HH:MM:SS'") from None
    if start is None or end is None:
        return (_parse_time(start or end or "", end=start is None),)
    first, last = _parse_time(start, end=False), _parse_time(end, end=True)
    if last < first:
        raise ClusterError(f"end {end!r} is before start {start!r}")
    return (first, last) if last != first else (first,)


def cog_parts(cogs: Sequence[Path]) -> tuple[list[tuple[str, Path, Path]], list[Path]]:
    """(part name, class COG, confidence COG) per part, and the VRT mosaics."""
    paths = [Path(p) for p in cogs]
    by_name = {p.name: p for p in paths}
    parts = []
    for path in paths:
        if path.suffix == ".tif" and path.stem.endswith("_class"):
            name = path.stem.removesuffix("_class")
            conf = by_name.get(f"{name}_confidence.tif")
            if conf is None:
                raise ClusterError(f"{path} has no {name}_confidence.tif beside it in cogs")
            parts.append((name, path, conf))
    if not parts:
        raise ClusterError(f"no <name>_class.tif among the COGs {[str(p) for p in paths]}")
    return sorted(parts), sorted(p for p in paths if p.suffix == ".vrt")


def _footprint(src: rasterio.DatasetReader) -> tuple[dict[str, Any], list[float]]:
    left, bottom, right, top = src.bounds
    n = _EDGE_POINTS
    xs = [left + (right - left) * i / n for i in range(n)]
    ys = [top - (top - bottom) * i / n for i in range(n)]
    ring_x = xs + [right] * n + [right - x + left for x in xs] + [left] * n
    ring_y = [top] * n + ys + [bottom] * n + [bottom - y + top for y in ys]
    lon, lat = warp_transform(src.crs, "EPSG:4326", ring_x, ring_y)
    ring = [[round(x, 7), round(y, 7)] for x, y in zip(lon, lat, strict=True)]
    ring.append(ring[0])
    bbox = [min(p[0] for p in ring), min(p[1] for p in ring)]
    bbox += [max(p[0] for p in ring), max(p[1] for p in ring)]
    return {"type": "Polygon", "coordinates": [ring]}, bbox


def _projection(src: rasterio.DatasetReader) -> dict[str, Any]:
    epsg = src.crs.to_epsg()
    crs = {"proj:code": f"EPSG:{epsg}"} if epsg else {"proj:wkt2": src.crs.to_wkt()}
    return crs | {
        "proj:shape": [src.height, src.width],
        "proj:transform": list(src.transform)[:6],
        "proj:bbox": list(src.bounds),
    }


def _classes(tags: dict[str, str], path: Path) -> list[dict[str, Any]]:
    names, colors = class_tags(tags, path)
    classes = [
        {"value": v, "name": n, "description": n, "color_hint": c.lstrip("#").upper()}
        for v, (n, c) in enumerate(zip(names, colors, strict=True))
    ]
    nodata = {"value": NODATA, "name": "nodata", "description": "no data", "nodata": True}
    return [*classes, nodata]


def _href(target: str, json_dir: Path) -> str:
    """A local path relative to the JSON file's folder; a URI (s3://, https://) as is."""
    if "://" in target:
        return target
    rel = os.path.relpath(Path(target).resolve(), json_dir.resolve())
    return rel if rel.startswith("..") else f"./{rel}"


def _run_links(obj: pystac.STACObject, json_dir: Path, sources: list[tuple]) -> None:
    for rel, uri, title, media in sources:
        obj.add_link(pystac.Link(rel, _href(uri, json_dir), media_type=media, title=title))


def _asset(
    path: Path, json_dir: Path, title: str, res: float, bands: int = 1, **extra: Any
) -> pystac.Asset:
    band = {"nodata": NODATA, "data_type": "uint8", "spatial_resolution": res}
    return pystac.Asset(
        _href(str(path), json_dir),
        title=title,
        media_type=_COG,
        roles=["data"],
        extra_fields={"raster:bands": [dict(band) for _ in range(bands)], **extra},
    )


def _quality_asset(path: Path, json_dir: Path, res: float) -> pystac.Asset:
    """The quality COG's asset: its two bands named and described, as the COG has them."""
    asset = _asset(path, json_dir, "input quality (clear observations used, filled flag)", res,
                   bands=len(quality.BANDS), description=quality.DESCRIPTION)  # fmt: skip
    with rasterio.open(path) as src:
        names = src.descriptions
    for band, name, text in zip(asset.extra_fields["raster:bands"], quality.BANDS, names,
                                strict=True):  # fmt: skip
        band |= {"name": name, "description": text or name}
    return asset


def write_output_catalog(
    cogs: Sequence[Path],
    out_dir: Path,
    *,
    run_id: str,
    store_uri: str,
    checkpoint_uri: str,
    config_uri: str | None,
    start: str | None,
    end: str | None,
    title: str | None = None,
) -> Path:
    """Write the collection over ``cogs`` (``compile_store``'s output), return its path."""
    out = Path(out_dir)
    parts, mosaics = cog_parts(cogs)
    by_name = {Path(p).name: Path(p) for p in cogs}
    with rasterio.open(parts[0][1]) as src:
        period = _period(start, end, src.tags())
    sources = [("derived_from", store_uri, "statemap run store (Zarr)", None)]
    sources.append(("via", checkpoint_uri, "model checkpoint", None))
    if config_uri is not None:
        sources.append(("via", config_uri, "job config", None))
    times: dict[str, Any] = {"datetime": period[0] if len(period) == 1 else None}
    if len(period) == 2:
        times |= {"start_datetime": period[0], "end_datetime": period[1]}

    items, bboxes = [], []
    for name, class_path, conf_path in parts:
        item_dir = out / name
        with rasterio.open(class_path) as src:
            geometry, bbox = _footprint(src)
            proj, tags, res = _projection(src), src.tags(), abs(src.transform.a)
        with rasterio.open(conf_path) as src:
            if _projection(src) != proj:
                raise ClusterError(f"{conf_path} is not on the grid of {class_path}")
        props: dict[str, Any] = {"statemap:run_id": run_id} | proj
        if "CHECKPOINT_SHA256" in tags:
            props["statemap:checkpoint_sha256"] = tags["CHECKPOINT_SHA256"]
        if "SOFTWARE_VERSION" in tags:
            props["statemap:software_version"] = tags["SOFTWARE_VERSION"]
        item = pystac.Item(
            name,
            geometry,
            bbox,
            times["datetime"],
            props,
            start_datetime=times.get("start_datetime"),
            end_datetime=times.get("end_datetime"),
            stac_extensions=[PROJECTION_SCHEMA, RASTER_SCHEMA, CLASSIFICATION_SCHEMA],
        )
        classes = _classes(tags, class_path)
        item.add_asset(
            "class",
            _asset(class_path, item_dir, "class map", res, **{"classification:classes": classes}),
        )
        item.add_asset(
            "confidence",
            _asset(conf_path, item_dir, "confidence (winning-class probability, 0..254)", res),
        )
        quality_path = by_name.get(f"{name}_quality.tif")
        if quality_path is not None:
            item.add_asset("quality", _quality_asset(quality_path, item_dir, res))
        _run_links(item, item_dir, sources)
        items.append(item)
        bboxes.append(bbox)

    union = [min(b[0] for b in bboxes), min(b[1] for b in bboxes)]
    union += [max(b[2] for b in bboxes), max(b[3] for b in bboxes)]
    interval = [period[0], period[-1]]
    collection = pystac.Collection(
        id=run_id,
        description=f"statemap class map and confidence of run {run_id}, compiled to COGs.",
        extent=pystac.Extent(pystac.SpatialExtent([union]), pystac.TemporalExtent([interval])),
        title=title,
        license=_LICENSE,
        extra_fields={"statemap:run_id": run_id},
    )
    for mosaic in mosaics:
        key = mosaic.stem.rsplit("_", 1)[-1] + "_mosaic"
        collection.add_asset(
            key,
            pystac.Asset(
                _href(str(mosaic), out),
                title=f"GDAL VRT mosaic of the {key.removesuffix('_mosaic')} COGs",
                media_type=_VRT,
                roles=["data", "mosaic"],
            ),
        )
    _run_links(collection, out, sources)
    collection.add_items(items)
    collection.normalize_hrefs(str(out))
    collection.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return out / "collection.json"
