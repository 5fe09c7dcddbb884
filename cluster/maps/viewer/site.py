"""The viewer folder written with a run's maps: ``viewer/`` beside the COGs.

It holds the page and its scripts (built from pinned npm packages, see
``web/``; shipped in the package, so nothing is fetched from a CDN) and
``maps.json``, everything the page needs to know about this run: the parts'
COGs (hrefs relative to the viewer folder, so the maps folder can be moved,
uploaded to a bucket or served by any web server as a whole), their extents,
the CRS with a proj4 definition (the browser registers it instead of looking
the code up on the internet), class names and colours (OpenLayers does not
apply a TIFF colour table), and the accuracy report where the run has one.

Everything in ``maps.json`` is read from the COGs' own metadata, so a viewer
can be written for any statemap maps folder, with or without its catalog.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import rasterio

from cluster.maps.collection import cog_parts
from cluster.maps.compile import class_tags
from cluster.predict.store import NODATA
from cluster.storage import objstore

__all__ = ["CONFIG", "STATIC", "VIEWER", "link_report", "viewer_config", "write_viewer"]

VIEWER = "viewer"
CONFIG = "maps.json"
SCHEMA = "statemap.viewer/1"
STATIC = Path(__file__).parent / "static"
_PAGE_FILES = (
    "index.html",
    "statemap-viewer.js",
    "statemap-viewer.css",
    "statemap-viewer.js.LEGAL.txt",
)
_MAP_CRS = "STATEMAP:MAP"  # the name a CRS without an EPSG code is registered under


def _relative(path: Path, folder: Path) -> str:
    return Path(os.path.relpath(path.resolve(), folder.resolve())).as_posix()


def _crs(src: rasterio.DatasetReader) -> dict[str, str]:
    """The code and a proj4 definition in the form proj4js parses (``+no_defs``, not
    GDAL's ``+no_defs=True``)."""
    epsg = src.crs.to_epsg()
    terms = [f"+{k}" if v is True else f"+{k}={v}" for k, v in src.crs.to_dict().items()]
    return {"code": f"EPSG:{epsg}" if epsg else _MAP_CRS, "proj4": " ".join(terms)}


def viewer_config(
    cogs: Sequence[Path],
    viewer_dir: Path,
    *,
    title: str | None = None,
    report: Path | None = None,
) -> dict[str, Any]:
    """``maps.json`` for the COGs that ``compile_store`` wrote (hrefs relative to
    ``viewer_dir``); ``report`` is the accuracy report's path, if the run has one."""
    parts, _ = cog_parts(cogs)
    out_dir = Path(cogs[0]).parent
    entries, crs, classes, run_id, resolution, overviews = [], None, None, "", 0.0, 0
    for name, class_path, conf_path in parts:
        with rasterio.open(class_path) as src:
            if crs is None:
                crs, resolution = _crs(src), abs(src.transform.a)
                names, colors = class_tags(src.tags(), class_path)
                classes = [
                    {"value": v, "name": n, "color": c}
                    for v, (n, c) in enumerate(zip(names, colors, strict=True))
                ]
                run_id = src.tags().get("RUN_ID", name)
            overviews = max(overviews, len(src.overviews(1)))
            entries.append(
                {
                    "name": name,
                    "class": _relative(class_path, viewer_dir),
                    "confidence": _relative(conf_path, viewer_dir),
                    "extent": list(src.bounds),
                    "width": src.width,
                    "height": src.height,
                }
            )
    optional = {
        "collection": out_dir / "collection.json",
        "quicklook": out_dir / "quicklook.png",
    }
    config: dict[str, Any] = {
        "schema": SCHEMA,
        "run_id": run_id,
        "title": title or run_id,
        "crs": crs,
        "resolution": resolution,
        "overviews": overviews,
        "nodata": NODATA,
        "classes": classes,
        "parts": entries,
    }
    for key, path in optional.items():
        config[key] = _relative(path, viewer_dir) if path.exists() else None
    config["report"] = None if report is None else _relative(report, viewer_dir)
    return config


def write_viewer(
    cogs: Sequence[Path], out_dir: Path, *, title: str | None = None, report: Path | None = None
) -> list[Path]:
    """Write ``viewer/`` (page, scripts, ``maps.json``) under ``out_dir``; returns its files."""
    folder = Path(out_dir) / VIEWER
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in _PAGE_FILES:
        shutil.copyfile(STATIC / name, folder / name)
        written.append(folder / name)
    config = viewer_config(cogs, folder, title=title, report=report)
    written.append(folder / CONFIG)
    objstore.write_bytes_atomic(str(written[-1]), (json.dumps(config, indent=2) + "\n").encode())
    return written


def link_report(maps: str, report: str) -> bool:
    """Point the viewer of the maps folder (local or s3://) ``maps`` at its accuracy
    report, ``report`` relative to ``maps``; False where the run has no viewer."""
    uri = objstore.join(objstore.join(maps, VIEWER), CONFIG)
    data = objstore.read_bytes(uri)
    if data is None:
        return False
    config = json.loads(data)
    config["report"] = f"../{report}"
    objstore.write_bytes_atomic(uri, (json.dumps(config, indent=2) + "\n").encode())
    return True
