"""Write a sample region to disk the way public catalogs publish imagery.

Readers, training and the whole-state job are tested against this region, so
it is laid out as they will meet real data: a static, self-contained STAC
catalog with a Sentinel-2 L2A collection (Earth Search asset keys, uint16 DN
with scale/offset, 10 m and 20 m bands, SCL, a scene in a sibling CRS, swath
edges, clouds) and an orthophoto collection (4-band uint8 tiles at a finer
resolution), every raster a validated Cloud-Optimized GeoTIFF. Beside the
catalog lie the truth the imagery was made from (labels, a cloud-free
composite) and the mapped area as GeoJSON.

Everything is seeded and free of wall-clock time: the same spec writes
byte-identical files, so tests can compare whole trees.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import rasterio
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from rasterio import features
from rasterio.crs import CRS
from rasterio.warp import transform_geom

from cluster.errors import ClusterError
from cluster.imagery.stacvalidate import validate_catalog
from cluster.sample.imagery import (
    ORTHO_BANDS,
    ORTHO_SCALE,
    S2_OFFSET,
    S2_SCALE,
    Acquisition,
    Raster,
    orthophotos,
    sentinel2_scenes,
)
from cluster.sample.scene import (
    BANDS,
    CLASS_COLORS,
    CLASS_NAMES,
    NODATA_CLASS,
    SampleSpec,
    synthesize,
)

__all__ = ["LAYOUTS", "SampleRegion", "validate_catalog", "write_region"]

LAYOUTS: tuple[str, ...] = ("s2", "ortho")
S2_COLLECTION = "sentinel-2-l2a"
ORTHO_COLLECTION = "orthophotos"
_LICENSE = "MIT"  # synthetic data, made by this project's code
_BLOCK = 256  # small enough that even test-sized rasters span several blocks

# Earth Search asset key -> (band name, centre wavelength µm, FWHM µm, title).
_S2_BANDS: dict[str, tuple[str, float, float, str]] = {
    "blue": ("B02", 0.49, 0.098, "Blue (band 2) - 10m"),
    "green": ("B03", 0.56, 0.045, "Green (band 3) - 10m"),
    "red": ("B04", 0.665, 0.038, "Red (band 4) - 10m"),
    "nir": ("B08", 0.842, 0.145, "NIR 1 (band 8) - 10m"),
    "nir08": ("B8A", 0.865, 0.033, "NIR 2 (band 8A) - 20m"),
    "swir16": ("B11", 1.61, 0.143, "SWIR 1 (band 11) - 20m"),
}
_SCL_TITLE = "Scene classification map (SCL)"
_SCL_DESCRIPTION = (
    "Sen2Cor classes: 0 no data, 3 cloud shadows, 4 vegetation, 5 not vegetated, "
    "6 water, 8 cloud medium probability, 9 cloud high probability"
)


@dataclass(frozen=True)
class SampleRegion:
    """Paths of a written sample region."""

    root: Path
    labels: Path  # uint8 COG, nodata 255, colour table, class names in tags
    composite: Path  # float32 4-band cloud-free reflectance COG, nodata NaN
    catalog: Path  # root catalog.json of a self-contained static STAC catalog
    boundary: Path  # mapped area as GeoJSON in the region's CRS (metres)


def write_region(
    out_dir: str | os.PathLike[str],
    spec: SampleSpec = SampleSpec(),  # noqa: B008 (frozen: one shared default is safe)
    *,
    layouts: tuple[str, ...] = LAYOUTS,
) -> SampleRegion:
    """Write ``spec``'s region into ``out_dir`` and return where each part is.

    ``layouts`` picks the imagery collections ("s2", "ortho"); the truth rasters,
    boundary and catalog are always written. Files of the same names are
    overwritten; files from an earlier, different region are not removed.
    """
    if isinstance(layouts, str) or not set(layouts) <= set(LAYOUTS):
        bad = [layouts] if isinstance(layouts, str) else [x for x in layouts if x not in LAYOUTS]
        raise ClusterError(f"unknown layout(s) {bad}: layouts is a tuple of {LAYOUTS}")
    root = Path(out_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    scene = synthesize(spec)
    region = SampleRegion(
        root=root,
        labels=root / "labels.tif",
        composite=root / "composite.tif",
        catalog=root / "catalog.json",
        boundary=root / "region.geojson",
    )
    write_labels(region.labels, Raster(scene.labels[None], spec.transform, spec.crs, NODATA_CLASS))
    write_cog(
        region.composite,
        Raster(scene.reflectance, spec.transform, spec.crs, float("nan")),
        resampling="average",
        descriptions=BANDS,
        tags={"QUANTITY": "surface reflectance", "SOURCE": f"statemap sample, seed {spec.seed}"},
    )
    region.boundary.write_text(json.dumps(boundary(spec, scene.labels), indent=1) + "\n")

    catalog = pystac.Catalog(
        id="statemap-sample",
        title=f"statemap sample region (seed {spec.seed})",
        description=(
            f"Synthetic imagery of a {spec.width}x{spec.height} px region at "
            f"{spec.resolution:g} m in {spec.crs}, made from seeded ground truth."
        ),
    )
    files: dict[str, list[tuple[str, Raster, str]]] = {}
    if "s2" in layouts:
        catalog.add_child(_s2_collection(sentinel2_scenes(scene), files))
    if "ortho" in layouts:
        catalog.add_child(_ortho_collection(orthophotos(scene), files))
    catalog.normalize_hrefs(str(root))
    for item in catalog.get_items(recursive=True):
        item_dir = Path(item.get_self_href() or "").parent
        item_dir.mkdir(parents=True, exist_ok=True)
        for name, raster, resampling in files[item.id]:
            write_cog(item_dir / name, raster, resampling=resampling)
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return region


def write_labels(
    path: Path,
    raster: Raster,
    class_names: tuple[str, ...] = CLASS_NAMES,
    class_colors: tuple[str, ...] = CLASS_COLORS,
) -> None:
    """Write a uint8 class map as every sample's labels are: a COG with a colour
    table and the class names and colours in its tags, so GIS and statemap agree."""
    write_cog(
        path,
        raster,
        resampling="mode",
        descriptions=("class",),
        colormap={i: rgba(c) for i, c in enumerate(class_colors)},
        tags={"CLASS_NAMES": json.dumps(class_names), "CLASS_COLORS": json.dumps(class_colors)},
        band_tags={f"CLASS_{i}": name for i, name in enumerate(class_names)},
    )


def write_cog(
    path: Path,
    raster: Raster,
    *,
    resampling: str,
    descriptions: tuple[str, ...] | None = None,
    colormap: dict[int, tuple[int, int, int, int]] | None = None,
    tags: dict[str, str] | None = None,
    band_tags: dict[str, str] | None = None,
) -> None:
    """Write one COG; GDAL's COG driver makes the tiles, overviews and layout."""
    count, height, width = raster.data.shape
    profile: dict[str, Any] = {
        "driver": "COG",
        "width": width,
        "height": height,
        "count": count,
        "dtype": raster.data.dtype.name,
        "crs": raster.crs,
        "transform": raster.transform,
        "nodata": raster.nodata,
        "compress": "DEFLATE",
        "predictor": "YES",
        "blocksize": _BLOCK,
        "overview_resampling": resampling,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(raster.data)
        for i, text in enumerate(descriptions or (), start=1):
            dst.set_band_description(i, text)
        if colormap is not None:
            dst.write_colormap(1, colormap)
        if tags:
            dst.update_tags(**tags)
        if band_tags:
            dst.update_tags(1, **band_tags)


def _s2_collection(
    scenes: list[Acquisition], files: dict[str, list[tuple[str, Raster, str]]]
) -> pystac.Collection:
    items = []
    for scene in scenes:
        item, files[scene.id] = s2_item(scene)
        items.append(item)
    return s2_collection(items)


def s2_item(scene: Acquisition) -> tuple[pystac.Item, list[tuple[str, Raster, str]]]:
    """A Sentinel-2 L2A item in Earth Search's layout, and its files (name, raster,
    overview resampling) to write beside the item's JSON.

    Separate from the collection so that a generator can write each scene's
    rasters and let go of them before making the next scene.
    """
    item = _item(scene, gsd=10.0)
    item.common_metadata.constellation = "sentinel-2"
    item.common_metadata.instruments = ["msi"]
    EOExtension.ext(item, add_if_missing=True).cloud_cover = scene.cloud_cover
    files = []
    for key, raster in scene.assets.items():
        if key == "scl":
            name, title, roles, resampling = "SCL.tif", _SCL_TITLE, ["data"], "nearest"
        else:
            name, title = f"{_S2_BANDS[key][0]}.tif", _S2_BANDS[key][3]
            roles, resampling = ["data", "reflectance"], "average"
        asset = _asset(item, key, name, title, roles, raster)
        res = raster.transform.a
        if key == "scl":
            asset.description = _SCL_DESCRIPTION
            band = RasterBand.create(nodata=0, data_type=DataType.UINT8, spatial_resolution=res)
        else:
            eo_name, center, fwhm, _ = _S2_BANDS[key]
            EOExtension.ext(asset, add_if_missing=True).bands = [
                Band.create(eo_name, key, center_wavelength=center, full_width_half_max=fwhm)
            ]
            band = RasterBand.create(
                nodata=0,
                data_type=DataType.UINT16,
                spatial_resolution=res,
                scale=S2_SCALE,
                offset=S2_OFFSET,
            )
        RasterExtension.ext(asset, add_if_missing=True).bands = [band]
        files.append((name, raster, resampling))
    return item, files


def s2_collection(items: list[pystac.Item]) -> pystac.Collection:
    """The "sentinel-2-l2a" collection of ``items`` (from :func:`s2_item`); its
    item_assets list the band keys the items carry, in Earth Search's order."""
    keys = {key for item in items for key in item.assets}
    assets = {k: (v[3], ["data", "reflectance"]) for k, v in _S2_BANDS.items() if k in keys}
    assets["scl"] = (_SCL_TITLE, ["data"])
    return _collection(
        S2_COLLECTION,
        "Sentinel-2 Level-2A (synthetic sample)",
        "Surface reflectance scenes in the layout Earth Search publishes: one COG per "
        "band, keyed by common band name. Reflectance = DN * 0.0001 - 0.1 (processing "
        "baseline 04.00); DN 0 is no data. " + _SCL_DESCRIPTION + ".",
        items,
        assets,
        {
            "platform": sorted({str(i.common_metadata.platform) for i in items}),
            "constellation": ["sentinel-2"],
            "instruments": ["msi"],
            "gsd": [10.0],
        },
    )


def _ortho_collection(
    tiles: list[Acquisition], files: dict[str, list[tuple[str, Raster, str]]]
) -> pystac.Collection:
    items = []
    for tile in tiles:
        raster = tile.assets["image"]
        res = raster.transform.a
        item = _item(tile, gsd=res)
        name = f"{tile.id}.tif"
        asset = _asset(item, "image", name, "RGBI orthophoto", ["data", "reflectance"], raster)
        EOExtension.ext(asset, add_if_missing=True).bands = [
            Band.create(b.upper(), b) for b in ORTHO_BANDS
        ]
        RasterExtension.ext(asset, add_if_missing=True).bands = [
            RasterBand.create(
                nodata=0, data_type=DataType.UINT8, spatial_resolution=res, scale=ORTHO_SCALE
            )
            for _ in ORTHO_BANDS
        ]
        files[tile.id] = [(name, raster, "average")]
        items.append(item)
    return _collection(
        ORTHO_COLLECTION,
        "Digital orthophotos, RGBI (synthetic sample)",
        "Aerial orthophoto tiles, one 4-band uint8 COG each in the order red, green, "
        f"blue, near infrared. Reflectance = DN * {ORTHO_SCALE:g}; DN 0 is no data.",
        items,
        {"image": ("RGBI orthophoto", ["data", "reflectance"])},
        {"gsd": sorted({i.common_metadata.gsd for i in items})},
    )


def _item(acq: Acquisition, *, gsd: float) -> pystac.Item:
    ring = [list(p) for p in acq.footprint]
    geometry = transform_geom(acq.crs, "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})
    coords = [[round(x, 7), round(y, 7)] for x, y in geometry["coordinates"][0]]
    xs, ys = [c[0] for c in coords], [c[1] for c in coords]
    item = pystac.Item(
        id=acq.id,
        geometry={"type": "Polygon", "coordinates": [coords]},
        bbox=[min(xs), min(ys), max(xs), max(ys)],
        datetime=acq.datetime,
        properties={},
    )
    item.common_metadata.platform = acq.platform
    item.common_metadata.gsd = gsd
    ProjectionExtension.ext(item, add_if_missing=True).code = acq.crs
    return item


def _asset(
    item: pystac.Item, key: str, name: str, title: str, roles: list[str], raster: Raster
) -> pystac.Asset:
    asset = pystac.Asset(
        href=f"./{name}", media_type=pystac.MediaType.COG, roles=roles, title=title
    )
    item.add_asset(key, asset)
    _, h, w = raster.data.shape
    ProjectionExtension.ext(asset, add_if_missing=True).apply(
        code=raster.crs,
        shape=[h, w],
        transform=list(raster.transform)[:6],
        bbox=list(raster.bounds),
    )
    return asset


def _collection(
    cid: str,
    title: str,
    description: str,
    items: list[pystac.Item],
    assets: dict[str, tuple[str, list[str]]],
    summaries: dict[str, list[Any]],
) -> pystac.Collection:
    collection = pystac.Collection(
        id=cid,
        title=title,
        description=description,
        extent=pystac.Extent.from_items(items),
        license=_LICENSE,
        summaries=pystac.Summaries(summaries),
    )
    collection.item_assets = {
        k: pystac.ItemAssetDefinition.create(t, None, pystac.MediaType.COG, roles)
        for k, (t, roles) in assets.items()
    }
    for item in items:
        collection.add_item(item)
    return collection


def boundary(
    spec: SampleSpec, labels: np.ndarray, name: str = "statemap sample region"
) -> dict[str, Any]:
    """The mapped area, traced on pixel edges so it agrees with labels.tif exactly."""
    mapped = labels != NODATA_CLASS
    polygons = [
        [_oriented(ring, hole=i > 0) for i, ring in enumerate(geom["coordinates"])]
        for geom, _ in features.shapes(
            mapped.astype(np.uint8), mask=mapped, connectivity=4, transform=spec.transform
        )
    ]
    geometry: dict[str, Any] = (
        {"type": "Polygon", "coordinates": polygons[0]}
        if len(polygons) == 1
        else {"type": "MultiPolygon", "coordinates": polygons}
    )
    epsg = CRS.from_user_input(spec.crs).to_epsg()
    area = float(np.count_nonzero(mapped)) * spec.resolution**2
    return {
        "type": "FeatureCollection",
        # Not RFC 7946 WGS84: coordinates are metres in the region's CRS, named
        # the GeoJSON 2008 way, which GDAL/OGR and QGIS still read.
        "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"}},
        "features": [
            {
                "type": "Feature",
                "properties": {
                    "name": name,
                    "seed": spec.seed,
                    "crs": spec.crs,
                    "area_m2": area,
                },
                "geometry": geometry,
            }
        ],
    }


def _oriented(ring: list[tuple[float, float]], *, hole: bool) -> list[list[float]]:
    """Exterior rings counter-clockwise, holes clockwise (the GeoJSON right-hand rule)."""
    xy = np.asarray(ring, dtype=float)
    area2 = float(np.sum(xy[:-1, 0] * xy[1:, 1] - xy[1:, 0] * xy[:-1, 1]))
    if (area2 < 0) != hole:
        xy = xy[::-1]
    return xy.tolist()


def rgba(color: str) -> tuple[int, int, int, int]:
    """'#rrggbb' as the opaque RGBA a GeoTIFF colour table holds."""
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return (r, g, b, 255)
