"""Write the phenology sample region to disk as the first sample is written.

A multi-temporal reader and compositor are tested against this region, so it
is laid out as they will meet a year of real data: a static, self-contained
STAC catalog of dated Sentinel-2 L2A scenes in Earth Search's layout (uint16
COGs with scale/offset, SCL at 20 m), beside the truth (labels.tif), the
mapped area (region.geojson), the reference stands (stands.gpkg) and where
the least-cloudy summer scene is hazy (haze.tif), which SCL does not say.

Scenes are made and written one at a time, so memory holds one scene's pixels
whatever the number of dates. Seeded and free of wall-clock time: the same
spec writes byte-identical files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pystac

from cluster.errors import ClusterError
from cluster.sample.catalog import (
    S2_COLLECTION,
    boundary,
    s2_collection,
    s2_item,
    write_cog,
    write_labels,
)
from cluster.sample.imagery import Raster
from cluster.sample.phenology import (
    PHENO_CLASS_COLORS,
    PHENO_CLASS_NAMES,
    YEAR,
    Truth,
    Visit,
    acquire,
    hazy_scene,
    plan_year,
    synthesize_phenology,
)
from cluster.sample.references import write_stands
from cluster.sample.scene import NODATA_CLASS, SampleSpec

__all__ = ["PHENOLOGY_SPEC", "PhenologyRegion", "haze_mask", "write_phenology_region"]

PHENOLOGY_SPEC = SampleSpec(width=768, height=768)


@dataclass(frozen=True)
class PhenologyRegion:
    """Paths of a written phenology sample region, and which scene hides haze."""

    root: Path
    labels: Path  # uint8 COG, nodata 255, colour table, class names in tags
    boundary: Path  # mapped area as GeoJSON in the region's CRS (metres)
    catalog: Path  # root catalog.json: one collection "sentinel-2-l2a", dated items
    haze: Path  # uint8 COG: 1 where hazy_scene is hazy, 0 clear, 255 outside the region
    stands: Path  # GeoPackage, EPSG:4326, polygons, attribute "species" = class name
    hazy_scene: str  # id of the least-cloudy summer scene, the one a "first" mosaic reads first
    year: int = YEAR


def write_phenology_region(
    out_dir: str | os.PathLike[str],
    spec: SampleSpec = PHENOLOGY_SPEC,
) -> PhenologyRegion:
    """Write ``spec``'s phenology region into ``out_dir`` and return where each part is.

    Files of the same names are overwritten; files from an earlier, different
    region are not removed.
    """
    root = Path(out_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    truth = synthesize_phenology(spec)
    visits = plan_year(truth)
    region = PhenologyRegion(
        root=root,
        labels=root / "labels.tif",
        boundary=root / "region.geojson",
        catalog=root / "catalog.json",
        haze=root / "haze.tif",
        stands=root / "stands.gpkg",
        hazy_scene=hazy_scene(visits).id,
    )
    write_labels(
        region.labels,
        Raster(truth.labels[None], spec.transform, spec.crs, NODATA_CLASS),
        PHENO_CLASS_NAMES,
        PHENO_CLASS_COLORS,
    )
    write_cog(
        region.haze,
        Raster(haze_mask(truth, visits)[None], spec.transform, spec.crs, NODATA_CLASS),
        resampling="nearest",
        descriptions=("haze",),
        tags={
            "SCENE": region.hazy_scene,
            "MEANING": "1: haze that SCL does not mark; 0: no haze; 255: outside the region",
        },
    )
    geojson = boundary(spec, truth.labels, name="statemap phenology sample region")
    region.boundary.write_text(json.dumps(geojson, indent=1) + "\n")
    write_stands(region.stands, truth.labels, spec, PHENO_CLASS_NAMES)

    items = []
    for visit in visits:
        item, files = s2_item(acquire(truth, visit))
        # pystac's default layout, written now so no two scenes are in memory at once.
        item_dir = root / S2_COLLECTION / item.id
        item_dir.mkdir(parents=True, exist_ok=True)
        for name, raster, resampling in files:
            write_cog(item_dir / name, raster, resampling=resampling)
        items.append(item)
    catalog = pystac.Catalog(
        id="statemap-phenology-sample",
        title=f"statemap phenology sample region (seed {spec.seed})",
        description=(
            f"Synthetic Sentinel-2 L2A scenes of {YEAR} over a {spec.width}x{spec.height} px "
            f"region at {spec.resolution:g} m in {spec.crs}: deciduous and evergreen forest "
            "classes that no single date separates, clouds and shadows marked in SCL, haze not."
        ),
    )
    catalog.add_child(s2_collection(items))
    catalog.normalize_hrefs(str(root))
    for item in items:
        if Path(item.get_self_href() or "").parent != root / S2_COLLECTION / item.id:
            raise ClusterError(f"{item.id}: pystac put the item at {item.get_self_href()}")
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return region


def haze_mask(truth: Truth, visits: tuple[Visit, ...]) -> np.ndarray:
    """(H, W) uint8: 1 where :func:`hazy_scene` is hazy, 0 clear, 255 outside the region."""
    h, w = truth.labels.shape
    haze = hazy_scene(visits).haze
    out = (haze[:h, :w] > 0).astype(np.uint8) if haze is not None else np.zeros((h, w), np.uint8)
    out[truth.labels == NODATA_CLASS] = NODATA_CLASS
    return out
