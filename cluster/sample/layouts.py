"""The sample's Sentinel-2 scenes as other providers publish them.

One data path must read the same pixels as the same reflectance whatever the
catalog's layout. The sample is written the way Earth Search v1 publishes
Sentinel-2 L2A (assets keyed by common name, ``raster:bands`` scale and
offset); here the same scenes are rewritten, pixels unchanged, in the layouts
of Microsoft Planetary Computer (keys ``B02``..., no raster extension: only
``s2:processing_baseline`` says that DN carry the +1000 offset) and of the
Copernicus Data Space Ecosystem (STAC 1.1, ``bands`` with
``eo:common_name``, asset-level ``raster:scale``/``raster:offset``/``nodata``,
every band also at coarser resolutions ``B02_10m``/``B02_20m``, ``SCL_20m``
with ``classification:classes``, JPEG2000 files). Field names and placement
follow the providers' own items in tests/data/real-stac/.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from cluster.errors import ClusterError
from cluster.sample.catalog import S2_COLLECTION

__all__ = ["LAYOUTS", "rewrite_catalog"]

LAYOUTS: tuple[str, ...] = ("planetary-computer", "cdse")
_EXT = "https://stac-extensions.github.io/{}/schema.json"
_COG = "image/tiff; application=geotiff; profile=cloud-optimized"
# Earth Search key -> (Sentinel-2 band, Planetary Computer's common name for it).
_BANDS = {
    "blue": ("B02", "blue"), "green": ("B03", "green"), "red": ("B04", "red"),
    "nir": ("B08", "nir"), "nir08": ("B8A", "rededge"), "swir16": ("B11", "swir16"),
}  # fmt: skip
_COMMON = {"B8A": "nir08"}  # CDSE names B8A as Earth Search does
_SCL_CLASSES = [
    (0, "no_data"), (1, "saturated_or_defective"), (2, "dark_area_pixels"),
    (3, "cloud_shadows"), (4, "vegetation"), (5, "not_vegetated"), (6, "water"),
    (7, "unclassified"), (8, "cloud_medium_probability"), (9, "cloud_high_probability"),
    (10, "thin_cirrus"), (11, "snow"),
]  # fmt: skip


def rewrite_catalog(
    region_root: str | os.PathLike[str], out_dir: str | os.PathLike[str], layout: str
) -> Path:
    """The Sentinel-2 collection of the sample at ``region_root`` (written by
    ``write_region``) as a self-contained static catalog in ``layout`` under
    ``out_dir``; returns its catalog.json."""
    if layout not in LAYOUTS:
        raise ClusterError(f"layout {layout!r}: use one of {list(LAYOUTS)}")
    source = Path(region_root) / S2_COLLECTION
    items = sorted(source.glob("*/*.json"))
    if not items:
        raise ClusterError(f"{source}: no Sentinel-2 items; write the sample with layout 's2'")
    out = Path(out_dir)
    links = []
    for path in items:
        doc = json.loads(path.read_text())
        folder = out / S2_COLLECTION / doc["id"]
        folder.mkdir(parents=True, exist_ok=True)
        rewrite = _planetary_computer if layout == "planetary-computer" else _cdse
        item = rewrite(doc, path.parent, folder)
        item["links"] = [
            {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "../collection.json", "type": "application/json"},
            {"rel": "collection", "href": "../collection.json", "type": "application/json"},
        ]
        _write(folder / f"{doc['id']}.json", item)
        links.append({"rel": "item", "href": f"./{doc['id']}/{doc['id']}.json",
                      "type": "application/geo+json"})  # fmt: skip
    collection = json.loads((source / "collection.json").read_text())
    collection.pop("item_assets", None)
    collection["stac_extensions"] = []
    collection["stac_version"] = "1.1.0"
    collection["description"] = f"The statemap sample's Sentinel-2 scenes in the {layout} layout."
    collection["links"] = [
        {"rel": "root", "href": "../catalog.json", "type": "application/json"},
        {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
        *links,
    ]
    _write(out / S2_COLLECTION / "collection.json", collection)
    catalog = {
        "type": "Catalog", "id": f"statemap-sample-{layout}", "stac_version":
        collection["stac_version"], "description": collection["description"],
        "links": [
            {"rel": "root", "href": "./catalog.json", "type": "application/json"},
            {"rel": "child", "href": f"./{S2_COLLECTION}/collection.json",
             "type": "application/json"},
        ],
    }  # fmt: skip
    _write(out / "catalog.json", catalog)
    return out / "catalog.json"


def _planetary_computer(doc: dict[str, Any], src: Path, dst: Path) -> dict[str, Any]:
    """Keys B02..., eo:bands, no raster extension; item-level proj:epsg; the
    processing baseline the only word on the DN offset."""
    props = doc["properties"]
    epsg = int(str(props["proj:code"]).split(":")[1])
    assets = {}
    for key, asset in doc["assets"].items():
        name = "SCL" if key == "scl" else _BANDS[key][0]
        shutil.copyfile(src / asset["href"], dst / f"{name}.tif")
        new = {"href": f"./{name}.tif", "type": _COG, "roles": ["data"],
               "gsd": asset["proj:transform"][0], "proj:bbox": asset["proj:bbox"],
               "proj:shape": asset["proj:shape"],
               "proj:transform": asset["proj:transform"]}  # fmt: skip
        if key != "scl":
            eo = asset["eo:bands"][0]
            new["eo:bands"] = [{"name": name, "common_name": _BANDS[key][1],
                                "center_wavelength": eo["center_wavelength"],
                                "full_width_half_max": eo["full_width_half_max"]}]  # fmt: skip
        assets[name] = new
    platform = str(props["platform"]).replace("sentinel-", "Sentinel-").upper().title()
    return {
        # Planetary Computer writes STAC 1.0.0; 1.1.0 here, whose core schemas pystac
        # ships for offline validation (the fields are the same).
        "type": "Feature", "stac_version": "1.1.0",
        "stac_extensions": [_EXT.format("eo/v1.0.0"), _EXT.format("projection/v1.0.0")],
        "id": doc["id"], "collection": S2_COLLECTION,
        "geometry": doc["geometry"], "bbox": doc["bbox"],
        "properties": {
            "datetime": props["datetime"], "platform": platform,
            "constellation": "Sentinel 2", "instruments": ["msi"],
            "eo:cloud_cover": props.get("eo:cloud_cover"), "proj:epsg": epsg,
            "s2:processing_baseline": "04.00", "s2:product_type": "S2MSI2A",
        },
        "assets": assets,
    }  # fmt: skip


def _cdse(doc: dict[str, Any], src: Path, dst: Path) -> dict[str, Any]:
    """STAC 1.1: ``bands`` with eo:common_name, asset-level raster v2 units,
    resolution-suffixed keys (10 m bands also at 20 m), SCL_20m with classes, JPEG2000."""
    props = doc["properties"]
    assets = {}
    for key, asset in doc["assets"].items():
        res = int(asset["proj:transform"][0])
        name = "SCL" if key == "scl" else _BANDS[key][0]
        with rasterio.open(src / asset["href"]) as ds:
            data, transform, crs = ds.read(1), ds.transform, ds.crs
        versions = [(res, data, transform)]
        if res == 10:  # ESA's downsampled copy, as the .SAFE holds it
            versions.append((20, _halve(data), transform @ transform.scale(2)))
        for r, pixels, t in versions:
            akey = f"{name}_{r}m"
            _write_jp2(dst / f"{akey}.jp2", pixels, t, crs)
            sampling = "sampling:original" if r == res else "sampling:downsampled"
            new = {"href": f"./{akey}.jp2", "type": "image/jp2", "gsd": r,
                   "proj:code": props["proj:code"], "proj:shape": list(pixels.shape),
                   "proj:transform": list(t)[:6], "nodata": 0}  # fmt: skip
            if key == "scl":
                new |= {"roles": ["data", sampling, f"gsd:{r}m"], "data_type": "uint8",
                        "classification:classes": [
                            {"value": v, "name": n, "description": n.replace("_", " "),
                             **({"nodata": True} if v == 0 else {})}
                            for v, n in _SCL_CLASSES]}  # fmt: skip
            else:
                new |= {
                    "roles": ["data", "reflectance", sampling, f"gsd:{r}m"],
                    "bands": [{"name": name, "eo:common_name": _COMMON.get(name, key)}],
                    "data_type": "uint16",
                    "raster:scale": asset["raster:bands"][0]["scale"],
                    "raster:offset": asset["raster:bands"][0]["offset"],
                }
            assets[akey] = new
    return {
        "type": "Feature", "stac_version": "1.1.0",
        # CDSE declares classification v2.0.0, whose schema is not vendored; v1.1.0
        # holds the same classes (and asks for a description of each).
        "stac_extensions": [_EXT.format(e) for e in ("eo/v2.0.0", "raster/v2.0.0",
                            "projection/v2.0.0", "classification/v1.1.0")],
        "id": doc["id"], "collection": S2_COLLECTION,
        "geometry": doc["geometry"], "bbox": doc["bbox"],
        "properties": {
            "datetime": props["datetime"], "platform": props["platform"],
            "constellation": "sentinel-2", "eo:cloud_cover": props.get("eo:cloud_cover"),
            "processing:level": "L2", "processing:version": "05.11",
            "product:type": "S2MSI2A", "proj:code": props["proj:code"],
        },
        "assets": assets,
    }  # fmt: skip


def _halve(dn: np.ndarray) -> np.ndarray:
    """2x2 means of uint16 DN, rounded half up; no data (0) where any of the four is."""
    h, w = dn.shape[0] // 2 * 2, dn.shape[1] // 2 * 2
    blocks = dn[:h, :w].reshape(h // 2, 2, w // 2, 2).astype(np.uint32)
    mean = (blocks.sum(axis=(1, 3)) + 2) // 4
    return np.where((blocks == 0).any(axis=(1, 3)), 0, mean).astype(dn.dtype)


def _write_jp2(path: Path, data: np.ndarray, transform: Any, crs: Any) -> None:
    """Lossless JPEG2000 with its georeferencing inside and no sidecar, as ESA writes
    Sentinel-2 products: the no-data value is said only by the STAC item."""
    profile = {"driver": "JP2OpenJPEG", "width": data.shape[1], "height": data.shape[0],
               "count": 1, "dtype": data.dtype.name, "crs": crs, "transform": transform,
               "QUALITY": 100, "REVERSIBLE": "YES"}  # fmt: skip
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(path, "w", **profile) as out:
        out.write(data, 1)


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
