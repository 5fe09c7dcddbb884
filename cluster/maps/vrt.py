"""The VRT mosaic over a split map's parts: one per array, as gdalbuildvrt writes it
for COGs on one grid, so that GDAL and QGIS open the whole region as one raster.

Written by ``cluster.maps.compile`` (kept here to keep that module about the COGs).
A multi-band array (``quality``) gets one ``VRTRasterBand`` per band, each over the
same band of every part.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rasterio.crs import CRS

from cluster.predict.store import NODATA, StoreLayout

__all__ = ["BLOCK", "Part", "write_vrt"]

BLOCK = 512  # the COGs' internal tiles (compile writes them so)


@dataclass(frozen=True)
class Part:
    """A rectangle of the store's pixels, on tile boundaries: rows [row, row + height)."""

    name: str
    row: int
    col: int
    height: int
    width: int

    def filename(self, array: str) -> str:
        return f"{self.name}_{array}.tif"


def write_vrt(
    path: Path,
    layout: StoreLayout,
    array: str,
    parts: Sequence[Part],
    tags: dict[str, str],
    descriptions: Sequence[str],
    colormap: dict[int, tuple[int, int, int, int]] | None = None,
) -> Path:
    """A VRT mosaic of the parts' COGs of ``array`` at ``path`` (written to a temp name,
    then renamed): the store's grid, ``tags`` as metadata, one band per description,
    a palette where ``colormap`` is given (the class map), else grey."""
    height, width = layout.shape
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    ET.SubElement(root, "SRS", dataAxisToSRSAxisMapping="1,2").text = CRS.from_user_input(
        layout.grid.crs
    ).to_wkt()
    ET.SubElement(root, "GeoTransform").text = ", ".join(
        repr(float(v)) for v in layout.transform.to_gdal()
    )
    meta = ET.SubElement(root, "Metadata")
    for key, value in tags.items():
        ET.SubElement(meta, "MDI", key=key).text = value
    for k, description in enumerate(descriptions, start=1):
        band = ET.SubElement(root, "VRTRasterBand", dataType="Byte", band=str(k))
        ET.SubElement(band, "Description").text = description
        ET.SubElement(band, "NoDataValue").text = str(NODATA)
        if colormap is not None:
            ET.SubElement(band, "ColorInterp").text = "Palette"
            table = ET.SubElement(band, "ColorTable")
            for _, (r, g, b, a) in sorted(colormap.items()):
                ET.SubElement(table, "Entry", c1=str(r), c2=str(g), c3=str(b), c4=str(a))
        else:
            ET.SubElement(band, "ColorInterp").text = "Gray"
        for part in parts:
            _source(band, part, array, k)
    ET.indent(root)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(ET.tostring(root, encoding="unicode") + "\n")
    os.replace(tmp, path)
    return path


def _source(band: ET.Element, part: Part, array: str, k: int) -> None:
    """Band ``k`` of one part's COG, placed at the part's offset in the mosaic."""
    src = ET.SubElement(band, "ComplexSource")
    ET.SubElement(src, "SourceFilename", relativeToVRT="1").text = part.filename(array)
    ET.SubElement(src, "SourceBand").text = str(k)
    ET.SubElement(
        src,
        "SourceProperties",
        RasterXSize=str(part.width),
        RasterYSize=str(part.height),
        DataType="Byte",
        BlockXSize=str(BLOCK),
        BlockYSize=str(BLOCK),
    )
    rect = {"xOff": "0", "yOff": "0", "xSize": str(part.width), "ySize": str(part.height)}
    ET.SubElement(src, "SrcRect", **rect)
    ET.SubElement(src, "DstRect", **{**rect, "xOff": str(part.col), "yOff": str(part.row)})
    ET.SubElement(src, "NODATA").text = str(NODATA)
