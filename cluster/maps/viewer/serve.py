"""Serve a run's maps folder to a browser on loopback, with HTTP range requests.

The viewer reads the COGs with range requests (one internal tile at a time),
which Python's ``http.server`` does not answer; Starlette's ``StaticFiles``
does (206 with Content-Range), under uvicorn. Maps on s3:// are first synced
into a local cache folder (only objects whose size changed are fetched again).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path

from cluster.errors import ClusterError
from cluster.maps.viewer.site import CONFIG, VIEWER, write_viewer
from cluster.storage import objstore
from cluster.storage.publish import PARTIAL

__all__ = ["COMPARE", "app", "local_maps", "serve", "sync_s3"]

COMPARE = "compare"  # the second run's folder is served under /compare/
REPORT = Path("accuracy") / "report.html"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "statemap" / "view"


def sync_s3(uri: str, cache: Path) -> Path:
    """A local copy of the maps under the s3:// prefix ``uri``, in ``cache``."""
    bucket, prefix = objstore.split_s3(uri)
    prefix = prefix.rstrip("/")
    folder = cache / bucket / prefix
    client = objstore.s3_client()
    found = 0
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""
    ):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix) + 1 :] if prefix else obj["Key"]
            if not rel or rel.startswith(f"{PARTIAL}/") or rel.endswith("/"):
                continue
            found += 1
            target = folder / rel
            if target.is_file() and target.stat().st_size == obj["Size"]:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.part")
            client.download_file(bucket, obj["Key"], str(partial))
            partial.replace(target)
    if not found:
        raise ClusterError(f"nothing under {uri}: give a run's maps folder (where its COGs are)")
    return folder


def local_maps(target: str, cache: Path | None = None) -> Path:
    """The local maps folder of ``target`` (a maps folder or its run.json, local or
    s3://), with its viewer written if the maps were compiled before there was one."""
    target = target.rstrip("/")
    if target.endswith("run.json"):
        target = target[: -len("run.json")].rstrip("/") or "."
    folder = sync_s3(target, cache or cache_root()) if objstore.is_s3(target) else Path(target)
    if not folder.is_dir():
        raise ClusterError(f"{target} is not a folder: give a run's maps folder or its run.json")
    if (folder / VIEWER / CONFIG).is_file():
        return folder
    cogs = sorted(folder.glob("*_class.tif")) + sorted(folder.glob("*_confidence.tif"))
    if not cogs:
        raise ClusterError(
            f"no <name>_class.tif in {target}: give a run's maps folder (the run's output.maps"
            " / run id, or the OUT of `statemap compile`)"
        )
    report = folder / REPORT
    write_viewer(cogs, folder, report=report if report.is_file() else None)
    return folder


def app(folders: Sequence[Path]) -> object:
    """The ASGI app: the first folder at /, a second one at /compare/."""
    from starlette.applications import Starlette
    from starlette.responses import RedirectResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    page = f"/{VIEWER}/index.html" + (f"?compare=/{COMPARE}/{VIEWER}/" if len(folders) > 1 else "")

    async def home(_request: object) -> RedirectResponse:
        return RedirectResponse(page)

    async def no_icon(_request: object) -> Response:  # browsers ask for one whatever the page
        return Response(status_code=204)

    routes: list[Route | Mount] = [Route("/", home), Route("/favicon.ico", no_icon)]
    if len(folders) > 1:
        routes.append(Mount(f"/{COMPARE}", app=StaticFiles(directory=folders[1])))
    routes.append(Mount("/", app=StaticFiles(directory=folders[0])))
    return Starlette(routes=routes)


def serve(
    folders: Sequence[Path],
    host: str = "127.0.0.1",
    port: int = 8765,
    on_ready: Callable[[str], None] = print,
) -> None:
    """Serve until interrupted; ``on_ready`` hears the page's URL once the port is bound."""
    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ClusterError(f"cannot listen on {host}:{port} ({exc}): pick another --port") from None
    sock.listen(128)  # connections wait in the backlog from now on, before uvicorn accepts
    bound = sock.getsockname()[1]
    name = f"[{host}]" if ":" in host else host
    on_ready(f"http://{name}:{bound}/")
    server = uvicorn.Server(uvicorn.Config(app(folders), log_level="warning"))
    server.run(sockets=[sock])
