"""How each kind of item gives its bands, units, nodata and quality mask: in one place.

A model band is found in an item by asset key or band name (eo v1
``eo:bands``, STAC 1.1 ``bands``), preferring a single-band file at the finest
resolution the item offers. Its units come, in order, from the config's
overrides, the item's own metadata (raster v1 ``raster:bands``; raster v2
``raster:scale`` / ``raster:offset`` / ``nodata`` on the band or the asset),
a provider convention, or nothing (the stored values as they are).

Conventions fill what providers leave out. Sentinel-2 (Planetary Computer,
Earth Search v0) publishes uint16 DN without scale or offset: reflectance is
DN / 10000, minus 0.1 from processing baseline 04.00 on (ESA's BOA_ADD_OFFSET
of -1000), unless the provider already shifted the pixels
(``sentinel:boa_offset_applied``). Where an item's metadata and the convention
disagree the metadata wins, and the disagreement is logged once per collection.

The quality mask is Sentinel-2's scene classification (``scl``, ``SCL``,
``SCL_20m``: the finest) or any asset with the data-mask role; its invalid
values are those whose ``classification:classes`` say no data, cloud, shadow,
cirrus, snow or ice, saturated or defective (Sen2Cor's 0, 1, 3, 8, 9, 10, 11 when
unnamed): snow hides the surface a land-cover map describes as cloud does.
Its cloud and shadow classes (3, 8, 9 unnamed) are widened by ``mask.dilate_m``:
the thin haze at a cloud's rim is classified clear.

Where files are: the Copernicus Data Space's hrefs are ``s3://eodata/...`` on
its own S3 endpoint (:data:`BUCKET_ENDPOINTS`), which the reader opens with
that bucket's own endpoint and keys (``cluster.storage.gdalenv.bucket_env``).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cluster.errors import ClusterError
from cluster.imagery.stacitem import BandSource, MaskSource, RawItem

__all__ = [
    "BUCKET_ENDPOINTS",
    "NO_OVERRIDES",
    "SCL_INVALID",
    "BandOverride",
    "CollectionOverrides",
    "Convention",
    "MaskOverride",
    "Overrides",
    "band_assets",
    "convention",
    "resolve",
]

log = logging.getLogger(__name__)

# Sen2Cor scene classes without usable surface reflectance:
# 0 no data, 1 saturated/defective, 3 cloud shadow, 8/9 cloud, 10 thin cirrus, 11 snow.
SCL_INVALID: tuple[int, ...] = (0, 1, 3, 8, 9, 10, 11)
SCL_DILATE: tuple[int, ...] = (3, 8, 9)  # cloud shadow, cloud: widened by mask.dilate_m
# classification:classes names that make a pixel of a mask asset unusable; of them,
# those widened by mask.dilate_m.
_INVALID_CLASS = re.compile(r"no.?data|saturat|defect|cloud|shadow|cirrus|snow", re.IGNORECASE)
_DILATE_CLASS = re.compile(r"cloud|shadow", re.IGNORECASE)
_SCL_KEY = re.compile(r"^scl(?:[_-](\d+)m)?$", re.IGNORECASE)
_BASELINE = re.compile(r"_N(\d{2})(\d{2})_")
_SKIP_ROLES = {"thumbnail", "overview", "metadata", "visual"}
S2_SCALE, S2_OFFSET = 1e-4, -0.1
_logged: set[tuple[str, str]] = set()
# Buckets that live on a provider's own S3 service, not the run's: the Copernicus
# Data Space's Sentinel archive (keys: STATEMAP_BUCKET_EODATA_ACCESS_KEY_ID, ...).
BUCKET_ENDPOINTS = {"eodata": "https://eodata.dataspace.copernicus.eu"}


@dataclass(frozen=True)
class BandOverride:
    """A config's word on one model band of a collection; None: not overridden."""

    asset: str | None = None
    band: int | None = None  # 1-based index in the asset's file
    scale: float | None = None
    offset: float | None = None
    nodata: float | None = None


@dataclass(frozen=True)
class MaskOverride:
    asset: str
    invalid: tuple[int, ...]
    dilate: tuple[int, ...] | None = None  # None: all of ``invalid``


@dataclass(frozen=True)
class CollectionOverrides:
    bands: tuple[tuple[str, BandOverride], ...] = ()
    mask: MaskOverride | None = None

    def band(self, name: str) -> BandOverride | None:
        return next((o for n, o in self.bands if n.lower() == name.lower()), None)


@dataclass(frozen=True)
class Overrides:
    """Per collection id (``*``: any collection without its own entry); and how far
    cloud and shadow masks are widened (``mask.dilate_m``; None: not said, which is
    0 in training and the checkpoint's in a run)."""

    collections: tuple[tuple[str, CollectionOverrides], ...] = ()
    dilate_m: float | None = None

    def of(self, collection: str) -> tuple[str, CollectionOverrides] | None:
        """The entry that applies to ``collection`` and its name in the config."""
        found = dict(self.collections)
        for key in (collection, "*"):
            if key in found:
                return key, found[key]
        return None


NO_OVERRIDES = Overrides()


@dataclass(frozen=True)
class Convention:
    """What a provider's items mean when their metadata is silent."""

    name: str  # e.g. "Sentinel-2 DN, processing baseline 04.00"
    scale: float
    offset: float | None  # None: depends on what the item does not say
    nodata: float | None
    why_unknown: str = ""  # when offset is None: what is missing


def convention(raw: RawItem) -> Convention | None:
    """The convention of ``raw``'s provider, if statemap knows one."""
    props = raw.properties
    platform = f"{props.get('platform', '')} {props.get('constellation', '')}".lower()
    if "sentinel-2" not in platform and "sentinel-2" not in raw.collection.lower():
        return None
    if props.get("sentinel:boa_offset_applied") is True:
        return Convention("Sentinel-2 DN, offset applied to the pixels", S2_SCALE, 0.0, 0.0)
    baseline = _baseline(raw)
    if baseline is None:
        return Convention(
            "Sentinel-2 DN", S2_SCALE, None, 0.0,
            why_unknown="the item gives no processing baseline (s2:processing_baseline), so "
            "whether DN carry the +1000 offset of baseline 04.00 and later is unknown",
        )  # fmt: skip
    label = f"Sentinel-2 DN, processing baseline {baseline[0]:02d}.{baseline[1]:02d}"
    return Convention(label, S2_SCALE, S2_OFFSET if baseline >= (4, 0) else 0.0, 0.0)


def resolve(
    raw: RawItem,
    bands: Sequence[str],
    overrides: Overrides = NO_OVERRIDES,
    units: str = "reflectance",
) -> tuple[tuple[BandSource, ...], MaskSource | None]:
    """Each band's source in the item, in the order of ``bands``, and its mask; the
    first band the item lacks is an error naming the item, the band and what it has.
    ``units="dn"`` (a checkpoint trained on stored values) reads values as stored:
    scale 1 and offset 0 unless the config's overrides say otherwise."""
    entry = overrides.of(raw.collection)
    rules = entry[1] if entry else CollectionOverrides()
    where = f"assets.{entry[0]}" if entry else ""
    conv = convention(raw)
    sources = tuple(
        _source(raw, name, *pick, rules.band(name), where, conv, units == "dn")
        for name, pick in zip(bands, _pick_bands(raw, bands, rules, where), strict=True)
    )
    return sources, _mask(raw, rules.mask, where, overrides.dilate_m or 0.0)


def band_assets(
    raw: RawItem, bands: Sequence[str], overrides: Overrides = NO_OVERRIDES
) -> list[str]:
    """The keys of the assets ``resolve`` would read, each once, refusing the same
    items; without resolving hrefs or units (for a plan: a third of the cost)."""
    entry = overrides.of(raw.collection)
    rules, where = (entry[1], f"assets.{entry[0]}") if entry else (CollectionOverrides(), "")
    return list(dict.fromkeys(key for key, _, _ in _pick_bands(raw, bands, rules, where)))


def asset_bands(asset: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per band of the file, eo:bands, raster:bands and STAC 1.1 ``bands`` merged."""
    groups = [asset.get(k) for k in ("bands", "raster:bands", "eo:bands")]
    groups = [g for g in groups if isinstance(g, list) and g]
    if len(groups) == 1:  # the common case: no merging to do
        return [b if isinstance(b, dict) else {} for b in groups[0]]
    return [
        {k: v for g in groups if i < len(g) and isinstance(g[i], dict) for k, v in g[i].items()}
        for i in range(max(map(len, groups), default=0))
    ]


def inventory(raw: RawItem) -> str:
    """The item's assets and the band names each carries, for error messages."""
    names = {
        k: sorted({n for b in asset_bands(a) for n in _names(b)}) for k, a in raw.assets.items()
    }
    return "[" + "; ".join(f"{k} ({', '.join(n)})" if n else k for k, n in names.items()) + "]"


def _baseline(raw: RawItem) -> tuple[int, int] | None:
    props = raw.properties
    for key in ("s2:processing_baseline", "sentinel:processing_baseline", "processing:version"):
        text = str(props.get(key) or "")
        if match := re.fullmatch(r"(\d{1,2})\.(\d{2})", text.strip()):
            return int(match[1]), int(match[2])
    for text in (raw.id, props.get("s2:product_uri"), props.get("sentinel:product_id")):
        if match := _BASELINE.search(str(text or "")):
            return int(match[1]), int(match[2])
    return None


def _usable(asset: dict[str, Any]) -> bool:
    """Previews and metadata may not hold model bands, unless they say they are data."""
    roles = set(asset.get("roles") or ())
    return not (roles & _SKIP_ROLES and "data" not in roles)


def _names(band: dict[str, Any]) -> set[str]:
    return {str(band[k]).lower() for k in ("common_name", "eo:common_name", "name") if k in band}


def _resolution(asset: Mapping[str, Any], raw: RawItem) -> float:
    """Metres per pixel of an asset as its metadata says; unknown sorts last."""
    candidates = [asset.get("gsd")]
    candidates += [b.get("spatial_resolution") for b in asset.get("raster:bands") or () if b]
    transform = asset.get("proj:transform")
    if isinstance(transform, list) and transform:
        candidates.append(abs(transform[0]) if isinstance(transform[0], int | float) else None)
    candidates.append(raw.properties.get("gsd"))
    for value in candidates:
        if isinstance(value, int | float) and value > 0:
            return float(value)
    return math.inf


def _pick_bands(
    raw: RawItem, bands: Sequence[str], rules: CollectionOverrides, where: str
) -> list[tuple[str, int, dict[str, Any]]]:
    """(asset key, 0-based band index, band metadata) per band; a missing band is refused."""
    assets = raw.assets
    described = {
        key: [(meta, _names(meta)) for meta in asset_bands(asset) or [{}]]
        for key, asset in assets.items()
        if _usable(asset)
    }
    out = []
    for name in bands:
        rule = rules.band(name)
        if rule is not None and rule.asset is not None:
            out.append(_named_band(raw, name, rule, f"{where}.bands.{name}"))
            continue
        found = _find_band(raw, described, name.lower())
        if found is None:
            raise ClusterError(
                f"item {raw.id} (collection {raw.collection or None}) has no band {name!r}; its "
                f"bands are {inventory(raw)}. The checkpoint's bands {list(bands)} must all be "
                "in every item: restrict collections= to ones carrying them, name its asset in "
                f"the config (assets.{raw.collection or '*'}.bands.{name}.asset), "
                "or use a checkpoint trained on bands this catalog has"
            )
        out.append(found)
    return out


def _named_band(
    raw: RawItem, name: str, rule: BandOverride, field: str
) -> tuple[str, int, dict[str, Any]]:
    """The band an override names: its asset, and its index there (given, the only
    band, or the band of that name)."""
    asset = raw.assets.get(str(rule.asset))
    if asset is None:
        raise ClusterError(
            f"{field}.asset: item {raw.id} has no asset {rule.asset!r}; its assets are "
            f"{inventory(raw)}"
        )
    metas = asset_bands(asset) or [{}]
    if rule.band is not None:
        if len(metas) > 1 and rule.band > len(metas):
            raise ClusterError(
                f"{field}.band: asset {rule.asset!r} of item {raw.id} has {len(metas)} bands, "
                f"not {rule.band}"
            )
        index = rule.band - 1
    elif len(metas) == 1:
        index = 0
    else:
        index = next((i for i, m in enumerate(metas) if name.lower() in _names(m)), -1)
        if index < 0:
            raise ClusterError(
                f"{field}: asset {rule.asset!r} of item {raw.id} has {len(metas)} bands and none "
                f"is called {name!r}; give its band: (1-based)"
            )
    return str(rule.asset), index, metas[index] if index < len(metas) else {}


def _find_band(
    raw: RawItem, described: dict[str, list[tuple[dict[str, Any], set[str]]]], want: str
) -> tuple[str, int, dict[str, Any]] | None:
    """The best asset band called ``want``: an asset keyed by the name beats one matched
    by band metadata; a single-band file beats a band of a multiband one (a uint8
    preview also lists red); the finest resolution beats coarser copies (B02_10m over
    B02_20m); a GeoTIFF beats a JPEG2000 copy; then the key decides."""
    assets, best = raw.assets, None
    for key, bands in described.items():
        index = 0 if key.lower() == want and len(bands) == 1 else -1
        index = next((i for i, (_, names) in enumerate(bands) if want in names), index)
        if index < 0:
            continue
        media = str(assets[key].get("type") or "").lower()
        res = _resolution(assets[key], raw)
        rank = (key.lower() != want, len(bands) > 1, res, "tif" not in media, key)
        if best is None or rank < best[0]:
            best = (rank, key, index, bands[index][0])
    return None if best is None else best[1:]


def _source(
    raw: RawItem,
    name: str,
    key: str,
    index: int,
    meta: dict[str, Any],
    rule: BandOverride | None,
    where: str,
    conv: Convention | None,
    stored: bool = False,
) -> BandSource:
    """Scale, offset and nodata: override, else metadata, else convention, else none;
    ``stored``: scale and offset only from an override (values as stored)."""
    asset = raw.assets[key]

    def stated(field: str) -> float | None:
        for holder in (meta, asset):
            value = holder.get(field, holder.get(f"raster:{field}"))
            if value is None:
                continue
            try:
                return float(value)
            except (TypeError, ValueError) as exc:
                raise ClusterError(
                    f"item {raw.id} asset {key!r} band {index + 1}: {field}={value!r} is not a "
                    "number; fix the catalog's raster metadata"
                ) from exc
        return None

    dtype = str(meta.get("data_type") or asset.get("data_type") or "")
    conv = conv if conv is not None and not dtype.startswith("float") else None
    values: dict[str, float | None] = {}
    origins = []
    for field, default in (("scale", 1.0), ("offset", 0.0), ("nodata", None)):
        override = getattr(rule, field) if rule is not None else None
        metadata = stated(field)
        guessed = getattr(conv, field) if conv is not None else None
        if override is not None:
            values[field], origin = override, f"config {where}.bands.{name}"
        elif stored and field != "nodata":
            values[field], origin = default, "values as stored (a checkpoint trained on DN)"
        elif metadata is not None:
            values[field], origin = metadata, "item metadata"
            if guessed is not None and not math.isclose(guessed, metadata, abs_tol=1e-12):
                _log_once(raw.collection, field, f"the items' {field} {metadata:g} (band {name}) "
                          f"differs from {conv.name}'s {guessed:g}; the metadata wins")  # fmt: skip
        elif conv is not None and field == "offset" and conv.offset is None:
            raise ClusterError(
                f"item {raw.id} (collection {raw.collection or None}) band {name} (asset "
                f"{key!r}): {conv.why_unknown}; give the offset in the config "
                f"(assets.{raw.collection or '*'}.bands.{name}.offset: -0.1 for baseline 04.00 "
                "and later, 0 before)"
            )
        elif guessed is not None:
            values[field], origin = guessed, conv.name
        else:
            values[field], origin = default, "none stated"
        if field != "nodata":
            origins.append(origin)
    scale, offset = values["scale"] or 0.0, values["offset"] or 0.0
    origin = (
        origins[0] if origins[0] == origins[1] else f"scale: {origins[0]}; offset: {origins[1]}"
    )
    href = raw.href(asset)
    return BandSource(href, index + 1, scale, offset, values["nodata"], key, origin)


def _mask(
    raw: RawItem, rule: MaskOverride | None, where: str, dilate_m: float
) -> MaskSource | None:
    """The override's mask asset, else the finest SCL, else a data-mask asset with classes."""
    assets = raw.assets
    if rule is not None:
        if rule.asset not in assets:
            raise ClusterError(
                f"{where}.mask.asset: item {raw.id} has no asset {rule.asset!r}; its assets "
                f"are {inventory(raw)}"
            )
        dilate = rule.invalid if rule.dilate is None else rule.dilate
        return MaskSource(raw.href(assets[rule.asset]), tuple(sorted(rule.invalid)), rule.asset,
                          tuple(sorted(dilate)), dilate_m)  # fmt: skip
    found = []
    for key, asset in assets.items():
        classes = _classes(asset)
        scl = _SCL_KEY.match(key)
        if scl or (classes and "data-mask" in (asset.get("roles") or ())):
            found.append(((scl is None, _resolution(asset, raw), key), key, asset, classes))
    if not found:
        return None
    _, key, asset, classes = min(found, key=lambda f: f[0])
    if classes:
        invalid = tuple(
            sorted(v for v, text, nodata in classes if nodata or _INVALID_CLASS.search(text))
        )
        dilate = tuple(sorted(v for v, text, nodata in classes
                              if not nodata and _DILATE_CLASS.search(text)))  # fmt: skip
    else:
        invalid, dilate = SCL_INVALID, SCL_DILATE
    return MaskSource(raw.href(asset), invalid, key, dilate, dilate_m)


def _classes(asset: Mapping[str, Any]) -> list[tuple[int, str, bool]]:
    """(value, name and description, flagged nodata) of an asset's classification:classes,
    on the asset or its first band."""
    holders = [asset, *((asset.get(k) or [{}])[0] or {} for k in ("raster:bands", "bands"))]
    for holder in holders:
        classes = holder.get("classification:classes") if isinstance(holder, dict) else None
        if isinstance(classes, list) and classes:
            return [
                (int(c["value"]), f"{c.get('name')} {c.get('description')}", bool(c.get("nodata")))
                for c in classes
                if isinstance(c, dict) and "value" in c
            ]
    return []


def _log_once(collection: str, field: str, text: str) -> None:
    if (collection, field) not in _logged:
        _logged.add((collection, field))
        log.warning("collection %s: %s", collection or "(none)", text)
