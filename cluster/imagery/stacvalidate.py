"""Validate a static STAC catalog offline, core and extension schemas alike.

pystac ships the STAC core schemas but fetches each extension's schema from
its published address. Catalogs here are checked in CI and on cluster nodes
with no route to the web, so the extension schemas are vendored in
``cluster/imagery/schemas/stac-extensions/<name>/<version>/schema.json`` (the path
mirrors the published address) and a validator that reads only its local
cache stands in for pystac's: a schema that is not vendored is an error that
says so, never a network request.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from jsonschema.exceptions import ValidationError
from pystac.errors import STACValidationError
from pystac.serialization import identify_stac_object
from pystac.stac_object import STACObjectType
from pystac.validation.stac_validator import GetSchemaError, JsonSchemaSTACValidator
from referencing.exceptions import Unresolvable

from cluster.errors import ClusterError

SCHEMA_ROOT: Traversable = resources.files("cluster.imagery") / "schemas" / "stac-extensions"
_PUBLISHED = "https://stac-extensions.github.io/{name}/{version}/schema.json"


class CatalogValidationError(ClusterError, STACValidationError):
    """A catalog, collection or item breaks a schema, or cannot be checked."""


def vendored_schemas(root: Traversable = SCHEMA_ROOT) -> dict[str, dict[str, Any]]:
    """Vendored extension schemas by their published URI."""
    schemas: dict[str, dict[str, Any]] = {}
    for ext in sorted(root.iterdir(), key=lambda p: p.name):
        if not ext.is_dir():
            continue
        for version in sorted(ext.iterdir(), key=lambda p: p.name):
            path = version / "schema.json"
            if not path.is_file():
                continue
            uri = _PUBLISHED.format(name=ext.name, version=version.name)
            schema = json.loads(path.read_text(encoding="utf-8"))
            if schema.get("$id", "").rstrip("#") != uri:
                raise ValueError(f"{path}: $id {schema.get('$id')!r} does not match {uri}")
            schemas[uri] = schema
    return schemas


class OfflineSTACValidator(JsonSchemaSTACValidator):
    """pystac's JSON-schema validator, limited to schemas on this machine.

    The cache starts with pystac's own core (and GeoJSON) schemas; the vendored
    extension schemas are added to it. ``_get_schema`` is the one place pystac
    would fetch a missing schema (directly, and via the ``$ref`` registry), so
    it is overridden to refuse instead.
    """

    def __init__(self) -> None:
        super().__init__()
        self.schema_cache.update(vendored_schemas())

    def _get_schema(self, schema_uri: str) -> dict[str, Any]:
        try:
            return self.schema_cache[schema_uri]
        except KeyError:
            raise GetSchemaError(schema_uri, LookupError(_missing(schema_uri))) from None


def _missing(schema_uri: str) -> str:
    match = re.fullmatch(
        r"https://stac-extensions\.github\.io/([^/]+)/([^/]+)/schema\.json", schema_uri
    )
    where = f"{match[1]}/{match[2]}/schema.json under " if match else ""
    return f"not available offline; vendor it as {where}{SCHEMA_ROOT}"


def validate_catalog(path: str | os.PathLike[str]) -> int:
    """Validate a catalog and every child and item it links, return how many.

    The walk follows the JSON files on disk (not pystac's in-memory objects), so
    what is checked is what a reader will read: relative links must resolve.
    ``path`` is the root ``catalog.json`` or the folder holding it.
    """
    start = Path(path)
    if start.is_dir():
        start = start / "catalog.json"
    validator = OfflineSTACValidator()
    pending, seen = [start.resolve()], set()
    while pending:
        href = pending.pop(0)
        if href in seen:
            continue
        seen.add(href)
        stac = json.loads(href.read_text(encoding="utf-8"))
        _validate_object(validator, stac, href)
        for link in stac.get("links", []):
            if link.get("rel") in ("child", "item"):
                pending.append(_linked(stac, href, link["href"]))
    return len(seen)


def _linked(stac: dict[str, Any], href: Path, target: str) -> Path:
    if "://" in target and not target.startswith("file://"):
        raise CatalogValidationError(
            f"{stac.get('id')!r} ({href}) links {target}: only local catalogs are checked"
        )
    linked = (href.parent / target.removeprefix("file://")).resolve()
    if not linked.is_file():
        raise CatalogValidationError(f"{stac.get('id')!r} ({href}) links missing file {linked}")
    return linked


def _validate_object(validator: OfflineSTACValidator, stac: dict[str, Any], href: Path) -> None:
    info = identify_stac_object(stac)
    kind = info.object_type
    version = str(info.version_range.latest_valid_version())
    core = validator.schema_uri_map.get_object_schema_uri(kind, version)
    if core is not None:
        with _explained(kind, stac, href, core):
            validator.validate_core(stac, kind, version, str(href))
    for ext in info.extensions:
        if ext not in validator.schema_cache:  # say so here, not via pystac's error log
            what = f"{kind.name.lower()} {stac.get('id')!r} ({href})"
            raise CatalogValidationError(f"{what} cannot be checked against {ext}: {_missing(ext)}")
        with _explained(kind, stac, href, ext):
            validator.validate_extension(stac, kind, version, ext, str(href))


@contextmanager
def _explained(
    kind: STACObjectType, stac: dict[str, Any], href: Path, schema: str
) -> Iterator[None]:
    """Turn pystac's errors into one line naming the object, schema and problem.

    pystac's own message embeds the whole failing schema fragment and
    instance, which buries the field at fault.
    """
    what = f"{kind.name.lower()} {stac.get('id')!r} ({href})"
    try:
        yield
    except STACValidationError as err:
        problem = _problem(err.source) if err.source else None
        detail = str(err) if problem is None else f"{problem.json_path}: {_short(problem.message)}"
        raise CatalogValidationError(f"{what} fails {schema}: {detail}", err.source) from err
    except (GetSchemaError, Unresolvable) as err:
        raise CatalogValidationError(f"{what} cannot be checked: {err}") from err


def _problem(errors: list[ValidationError]) -> ValidationError:
    """The error that names the field at fault.

    Schemas branch with ``oneOf`` (item | collection, Point | Polygon | ...), so
    the top error often says only "not valid under any of the given schemas".
    Follow the branch that got furthest into the document before failing (on a
    tie, the one with fewest errors) down to a single error.
    """
    error = max(errors, key=_reach)
    while error.context:
        branch = max(_branches(error), key=lambda errs: (min(map(_reach, errs)), -len(errs)))
        error = min(branch, key=_reach)
    return error


def _branches(error: ValidationError) -> list[list[ValidationError]]:
    grouped: dict[Any, list[ValidationError]] = {}
    for sub in error.context or ():
        grouped.setdefault(sub.relative_schema_path[0], []).append(sub)
    return list(grouped.values())


def _reach(error: ValidationError) -> int:
    """How deep into the document the validation got before this error."""
    if not error.context:
        return len(error.absolute_path)
    return max(min(map(_reach, errs)) for errs in _branches(error))


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
