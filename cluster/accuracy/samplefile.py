"""Sample points on disk: a GeoPackage for QGIS and a CSV for Collect Earth, and back.

``statemap sample-design`` writes both, with the same columns: ``id``, ``x``,
``y`` (map CRS, the pixel's centre), ``lon``, ``lat`` (EPSG:4326), ``stratum``,
``map_class``, ``stratum_pixels`` (N_h), ``stratum_sample`` (n_h) and an empty
``reference`` for the labeller. ``statemap assess`` reads them back, and any
other point file too (a forest inventory grid for post-stratification): a
GeoPackage or other OGR vector of points in any CRS it names, or a CSV with
``x``/``y`` in the map's CRS or ``lon``/``lat``. Labels are read as text
(a code 3 typed into a numeric field reads "3"); an empty cell is None.
"""

from __future__ import annotations

import csv
import io
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import pyogrio.raw
import shapely
from pyogrio.errors import DataLayerError, DataSourceError

from cluster.accuracy.errors import AccuracyError
from cluster.storage import objstore

__all__ = [
    "COLUMNS",
    "LAYER",
    "SAMPLES_CSV",
    "SAMPLES_GPKG",
    "LoadedSamples",
    "SamplePoints",
    "read_samples",
    "write_csv",
    "write_gpkg",
]

COLUMNS = ("id", "x", "y", "lon", "lat", "stratum", "map_class", "stratum_pixels",
           "stratum_sample", "reference")  # fmt: skip
LAYER = "samples"
SAMPLES_GPKG, SAMPLES_CSV = "samples.gpkg", "samples.csv"
_LONLAT = "EPSG:4326"
_LONLAT_DECIMALS = 8  # about 1 mm: a point rounds back into its own pixel


@dataclass(frozen=True)
class SamplePoints:
    """The design's points, one entry per point in every array (ids 1..n)."""

    ids: np.ndarray
    x: np.ndarray
    y: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    stratum: np.ndarray  # names (object)
    map_class: np.ndarray  # names (object)
    stratum_pixels: np.ndarray
    stratum_sample: np.ndarray

    def columns(self) -> list[np.ndarray]:
        """The field arrays in ``COLUMNS`` order, ``reference`` empty (null)."""
        lon = np.round(self.lon.astype(float), _LONLAT_DECIMALS)
        lat = np.round(self.lat.astype(float), _LONLAT_DECIMALS)
        return [
            self.ids.astype(np.int64), self.x.astype(float), self.y.astype(float), lon, lat,
            self.stratum.astype(object), self.map_class.astype(object),
            self.stratum_pixels.astype(np.int64), self.stratum_sample.astype(np.int64),
            np.full(len(self.ids), None, dtype=object),
        ]  # fmt: skip


def write_gpkg(path: Path, points: SamplePoints, crs: str) -> None:
    """Points in the map's CRS, layer ``samples``; ``reference`` a text field, all null."""
    path.unlink(missing_ok=True)
    pyogrio.raw.write(
        path,
        shapely.to_wkb(shapely.points(points.x.astype(float), points.y.astype(float))),
        points.columns(),
        list(COLUMNS),
        layer=LAYER,
        driver="GPKG",
        geometry_type="Point",
        crs=crs,
    )


def write_csv(path: Path, points: SamplePoints) -> None:
    """The same columns as text; floats at full precision (repr), so x, y round-trip."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for row in zip(*points.columns(), strict=True):
            writer.writerow(["" if v is None else _cell(v) for v in row])


@dataclass(frozen=True)
class LoadedSamples:
    """A point file as read: ids, positions in ``crs`` (None: the map's CRS) and its fields."""

    source: str
    ids: tuple[int, ...]
    has_ids: bool  # False: ids are row numbers (1 = first data row)
    xs: np.ndarray
    ys: np.ndarray
    crs: str | None
    fields: Mapping[str, tuple[Any, ...]]

    def __len__(self) -> int:
        return len(self.ids)

    def where(self, i: int) -> str:
        """How a message names unit ``i``: its id, or its row when the file has no ids."""
        return f"point id {self.ids[i]}" if self.has_ids else f"row {self.ids[i]}"

    def texts(self, name: str) -> list[str | None] | None:
        """Field ``name`` as text (None where empty), or None where the file has no such field."""
        values = self.fields.get(name)
        return None if values is None else [_text(v) for v in values]


def read_samples(uri: str, *, layer: str | None = None) -> LoadedSamples:
    """A CSV or an OGR vector of points (local or s3://), checked row by row."""
    data = objstore.read_bytes(uri)
    if data is None:
        raise AccuracyError(f"sample file {uri} does not exist; check the path")
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    if name.lower().endswith(".csv"):
        return _read_csv(uri, data)
    with tempfile.TemporaryDirectory(prefix="statemap-samples-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        return _read_ogr(uri, path, layer)


def _read_csv(uri: str, data: bytes) -> LoadedSamples:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AccuracyError(f"{uri} is not UTF-8 text ({exc}); save the CSV as UTF-8") from exc
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    rows = [{k.strip(): v for k, v in row.items() if k is not None} for row in reader]
    if not rows:
        raise AccuracyError(f"{uri} holds no sample points (header {header}); give a labelled file")
    if {"x", "y"} <= set(header):
        keys, crs = ("x", "y"), None
    elif {"lon", "lat"} <= set(header):
        keys, crs = ("lon", "lat"), _LONLAT
    else:
        raise AccuracyError(
            f"{uri} has columns {header} but no x, y (map CRS) or lon, lat (EPSG:4326) columns; "
            "add the points' coordinates"
        )
    raw_ids = [row.get("id") for row in rows] if "id" in header else None
    ids, has_ids = _ids(uri, raw_ids, len(rows))
    coords = np.empty((2, len(rows)))
    for i, row in enumerate(rows):
        for axis, key in enumerate(keys):
            try:
                coords[axis, i] = float(row[key])
            except (TypeError, ValueError):
                where = f"point id {ids[i]}" if has_ids else f"row {i + 1}"
                raise AccuracyError(
                    f"{uri}, {where}: {key} {row[key]!r} is not a number; give its coordinate"
                ) from None
    fields = {h: tuple(row.get(h) for row in rows) for h in header}
    return LoadedSamples(uri, ids, has_ids, coords[0], coords[1], crs, fields)


def _read_ogr(uri: str, path: Path, layer: str | None) -> LoadedSamples:
    try:
        layers = [str(n) for n, _ in pyogrio.list_layers(path)]
        if layer is None:
            layer = LAYER if LAYER in layers or not layers else layers[0]
        meta, _, wkb, values = pyogrio.raw.read(path, layer=layer, force_2d=True)
    except DataLayerError as exc:
        raise AccuracyError(f"{uri}: no layer {layer!r} ({exc}); choose one of {layers}") from exc
    except DataSourceError as exc:
        raise AccuracyError(
            f"{uri}: GDAL cannot read it as vector data ({exc}); give a GeoPackage or a CSV"
        ) from exc
    names = [str(f) for f in meta["fields"]]
    fields = {n: tuple(v.tolist()) for n, v in zip(names, values, strict=True)}
    if wkb is None or len(wkb) == 0:
        raise AccuracyError(f"{uri}: layer {layer!r} holds no points; give a labelled file")
    ids, has_ids = _ids(uri, list(fields["id"]) if "id" in fields else None, len(wkb))
    geoms = shapely.from_wkb(wkb)
    bad = np.flatnonzero(
        shapely.is_missing(geoms)
        | shapely.is_empty(geoms)
        | (shapely.get_type_id(geoms) != shapely.GeometryType.POINT)
    )
    if bad.size:
        where = f"point id {ids[bad[0]]}" if has_ids else f"feature {bad[0] + 1}"
        raise AccuracyError(
            f"{uri}, {where}: geometry is not a point ({geoms[bad[0]]!s:.60}); give each "
            "sample one point"
        )
    crs = meta["crs"]
    if crs is None:
        raise AccuracyError(
            f"{uri}: layer {layer!r} has no CRS, so its points could be anywhere; assign the "
            "CRS they are in (e.g. ogr2ogr -a_srs EPSG:25832)"
        )
    return LoadedSamples(
        uri, ids, has_ids, shapely.get_x(geoms), shapely.get_y(geoms), str(crs), fields
    )


def _ids(uri: str, raw: Sequence[Any] | None, n: int) -> tuple[tuple[int, ...], bool]:
    """Ids as whole numbers, unique; without an id column, row numbers 1..n."""
    if raw is None:
        return tuple(range(1, n + 1)), False
    ids = []
    for i, value in enumerate(raw):
        text = _text(value)
        try:
            number = int(text) if text is not None else None
        except ValueError:
            number = None
        if number is None:
            raise AccuracyError(
                f"{uri}, row {i + 1}: id {value!r} is not a whole number; restore the id "
                "sample-design wrote (or drop the id column for a sample without design)"
            )
        ids.append(number)
    seen: set[int] = set()
    for number in ids:
        if number in seen:
            raise AccuracyError(f"{uri}: point id {number} appears twice; each point once")
        seen.add(number)
    return tuple(ids), True


def _text(value: Any) -> str | None:
    """A cell as text: None, NaN and blanks are None; 3.0 is "3"."""
    if value is None:
        return None
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return None
        if float(value).is_integer():
            return str(int(value))
    text = str(value).strip()
    return text or None


def _cell(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return repr(float(value))
    return str(value)
