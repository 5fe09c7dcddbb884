"""A real Azure Blob Storage for the tests: Azurite (npm) on loopback, and a SAS token
endpoint as Planetary Computer's answers, also on loopback.

``azurite`` (session fixture) starts ``azurite-blob`` on a free port with its
well-known development account, installing it first from the npm registry
into ``tests/azurite/node_modules`` (``npm ci``, from the lock file there) when
it is not there yet; without Node.js the tests that need it are skipped,
saying why. Containers are private: a blob is read only with a SAS token.

:class:`TokenEndpoint` answers ``GET /{account}/{container}`` with
``{"token": ..., "msft:expiry": ...}`` as Planetary Computer's does, with real
container SAS tokens (read and list, signed with the account key) valid for
``lifetime_s``, and counts what it handed out.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.netproxy import free_port, stop_process

__all__ = ["ACCOUNT", "Azurite", "TokenEndpoint", "azurite", "publish"]

ACCOUNT = "devstoreaccount1"
# Azurite's published development key (docs: "Use Azurite for local development").
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
_HERE = Path(__file__).resolve().parent / "azurite"
_START_TIMEOUT = 60.0


def find_azurite() -> str | None:
    """``azurite-blob`` of tests/azurite, installed from its lock file if need be."""
    binary = _HERE / "node_modules" / ".bin" / "azurite-blob"
    if binary.exists():
        return str(binary)
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        return None
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=_HERE, check=True,
                   timeout=600)  # fmt: skip
    return str(binary) if binary.exists() else None


class Azurite:
    """One azurite-blob process with a data folder of its own."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.binary, self.folder, self.port = binary, folder, free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """What ``STATEMAP_SAS_HOSTS`` lists for hrefs on this server."""
        return f"127.0.0.1:{self.port}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                f"BlobEndpoint={self.endpoint}/{ACCOUNT};")  # fmt: skip

    def href(self, container: str, blob: str) -> str:
        return f"{self.endpoint}/{ACCOUNT}/{container}/{blob}"

    def client(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def upload_tree(self, folder: Path, container: str) -> None:
        """Every file under ``folder`` as a blob named by its relative path."""
        service = self.client()
        box = service.get_container_client(container)
        if not box.exists():
            box.create_container()  # private: no anonymous reads
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            with open(path, "rb") as data:
                box.upload_blob(path.relative_to(folder).as_posix(), data, overwrite=True)

    def start(self) -> None:
        log = open(self.folder / "azurite.log", "ab")  # noqa: SIM115 (the process's)
        self._proc = subprocess.Popen(
            [self.binary, "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
             "--location", str(self.folder), "--silent", "--skipApiVersionCheck",
             "--disableTelemetry", "--disableProductStyleUrl"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"azurite exited: {(self.folder / 'azurite.log').read_text()}")
            try:
                self.client().get_service_properties()
                return
            except Exception:  # not up yet
                time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"azurite on port {self.port} not ready after {_START_TIMEOUT} s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        stop_process(proc)


def publish(
    azurite: Azurite, folder: Path, catalog: Path, container: str, copy: Path, via: str = ""
) -> Path:
    """The files under ``folder`` on Azurite, and a ``copy`` of the folder without them
    whose STAC items' assets are the blobs' plain (unsigned) hrefs, as Planetary
    Computer's items are (on endpoint ``via``, e.g. a proxy, if given); returns the
    copy's ``catalog`` (a path under ``folder``)."""
    azurite.upload_tree(folder, container)
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("*.tif"))
    for path in copy.rglob("*.json"):
        doc = json.loads(path.read_text())
        for asset in doc.get("assets", {}).values() if isinstance(doc, dict) else ():
            if asset.get("href", "").endswith(".tif") and "://" not in asset["href"]:
                blob = (path.parent / asset["href"]).resolve().relative_to(copy.resolve())
                asset["href"] = azurite.href(container, blob.as_posix())
                if via:
                    asset["href"] = asset["href"].replace(azurite.endpoint, via, 1)
        path.write_text(json.dumps(doc))
    return copy / catalog.relative_to(folder)


class TokenEndpoint:
    """A loopback SAS token endpoint for ``azurite``'s account; a context manager."""

    def __init__(self, lifetime_s: float) -> None:
        self.lifetime_s = lifetime_s
        self.issued: Counter[str] = Counter()  # container -> tokens handed out
        self.tokens: list[str] = []  # every token handed out, to look for in outputs
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/api/sas/v1/token"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = self.path.strip("/").split("/")
                if parts[:3] != ["api", "sas", "v1"] or len(parts) != 6 or parts[4] != ACCOUNT:
                    self.send_error(404, "no such account or container")
                    return
                body = json.dumps(endpoint.token(parts[5])).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def token(self, container: str) -> dict[str, str]:
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        now = dt.datetime.now(dt.UTC)
        # SAS times are whole seconds: round up, so a token lives lifetime_s at least.
        expiry = now.replace(microsecond=0) + dt.timedelta(seconds=self.lifetime_s + 1)
        read = ContainerSasPermissions(read=True, list=True)
        token = generate_container_sas(ACCOUNT, container, account_key=ACCOUNT_KEY,
                                       permission=read, expiry=expiry,
                                       start=now - dt.timedelta(minutes=5))  # fmt: skip
        self.issued[container] += 1
        self.tokens.append(token)
        return {"msft:expiry": expiry.isoformat().replace("+00:00", "Z"), "token": token}

    def __enter__(self) -> TokenEndpoint:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """A running Azurite (blob service); skips where Node.js is missing."""
    binary = find_azurite()
    if binary is None:
        pytest.skip("Azurite needs Node.js and npm (Debian: apt install nodejs npm)")
    server = Azurite(binary, tmp_path_factory.mktemp("azurite"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
