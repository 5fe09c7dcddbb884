"""Publishing outputs: verified, idempotent, never half-visible, and surviving a server crash.

The S3 tests run against a real SeaweedFS on loopback (``tests/s3server.py``).
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from cluster.storage.objstore import ObjectStoreError
from cluster.storage.publish import PARTIAL, publish

MB = 1024 * 1024


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> tuple[Path, list[Path]]:
    """Two small files (one in a subfolder) and a ~40 MB random one."""
    root = tmp_path_factory.mktemp("outputs")
    (root / "parts").mkdir()
    small = [root / "map.vrt", root / "parts" / "map_0_0.tif"]
    small[0].write_bytes(b"<VRTDataset/>\n" * 10)
    small[1].write_bytes(os.urandom(300_000))
    big = root / "parts" / "big.tif"
    big.write_bytes(os.urandom(40 * MB + 12345))
    return root, [*small, big]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _events():
    seen: list[tuple[str, str]] = []
    return seen, lambda what, uri: seen.append((what, uri))


def test_local_publish_copies_verifies_and_skips(outputs, tmp_path):
    root, files = outputs
    seen, on_event = _events()
    uris = publish(files, str(tmp_path / "out"), base=root, on_event=on_event)
    assert uris == [str(tmp_path / "out" / f.relative_to(root)) for f in files]
    for f, uri in zip(files, uris, strict=True):
        assert Path(uri).read_bytes() == f.read_bytes()
    assert [w for w, _ in seen] == ["uploaded"] * 3
    assert not [p for p in (tmp_path / "out").rglob("*") if "partial" in p.name]

    seen.clear()
    publish(files, str(tmp_path / "out"), base=root, on_event=on_event)
    assert [w for w, _ in seen] == ["skipped"] * 3

    # default keys: file names
    flat = publish(files[:2], str(tmp_path / "flat"))
    assert [Path(u).name for u in flat] == ["map.vrt", "map_0_0.tif"]


def test_base_must_contain_the_files(outputs, tmp_path):
    root, files = outputs
    with pytest.raises(ObjectStoreError, match="not under base"):
        publish(files, str(tmp_path), base=root / "parts")


@pytest.mark.s3
def test_s3_publish_multipart_verified_idempotent(outputs, s3_server, tmp_path):
    root, files = outputs
    client = s3_server.client()
    seen, on_event = _events()
    dest = s3_server.uri("publish/run1")
    uris = publish(files, dest, base=root, on_event=on_event)
    assert uris == [f"{dest}/{f.relative_to(root).as_posix()}" for f in files]
    assert [w for w, _ in seen] == ["uploaded"] * 3
    stored = s3_server.objects("publish/run1")
    assert set(stored) == {f.relative_to(root).as_posix() for f in files}  # no partials left
    for f in files:
        key = f"publish/run1/{f.relative_to(root).as_posix()}"
        assert stored[f.relative_to(root).as_posix()] == f.read_bytes()
        head = client.head_object(Bucket=s3_server.bucket, Key=key)
        assert head["Metadata"]["sha256"] == _sha(f.read_bytes())
    big_key = f"publish/run1/{files[2].relative_to(root).as_posix()}"
    head = client.head_object(Bucket=s3_server.bucket, Key=big_key)
    assert "-" in head["ETag"]  # a multipart object (its copy was multipart too)
    before = {
        f: client.head_object(Bucket=s3_server.bucket, Key=f"publish/run1/{f}")["LastModified"]
        for f in stored
    }

    # republish: nothing goes up again
    seen.clear()
    time.sleep(1.1)
    publish(files, dest, base=root, on_event=on_event)
    assert [w for w, _ in seen] == ["skipped"] * 3
    after = {
        f: client.head_object(Bucket=s3_server.bucket, Key=f"publish/run1/{f}")["LastModified"]
        for f in stored
    }
    assert after == before

    # a file changed locally goes up again; the others are skipped
    changed = tmp_path / "changed"
    changed.mkdir()
    (changed / "parts").mkdir()
    new = changed / "parts" / "map_0_0.tif"
    new.write_bytes(os.urandom(1000))
    seen.clear()
    publish([new], dest, base=changed, on_event=on_event)
    assert seen == [("uploaded", f"{dest}/parts/map_0_0.tif")]
    assert s3_server.objects("publish/run1")["parts/map_0_0.tif"] == new.read_bytes()


@pytest.mark.s3
def test_s3_errors_name_file_and_destination_not_credentials(outputs, s3_server, monkeypatch):
    _root, files = outputs
    with socket.socket() as s:  # a port nobody listens on: the endpoint is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    # configure_gdal (run by earlier tests) derives these, and they take precedence
    monkeypatch.delenv("AWS_S3_ENDPOINT", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    t0 = time.monotonic()
    with pytest.raises(ObjectStoreError) as info:
        publish(files[:1], s3_server.uri("publish/down"), retry_seconds=2)
    assert time.monotonic() - t0 < 30  # bounded
    msg = str(info.value)
    assert str(files[0]) in msg and s3_server.uri("publish/down/map.vrt") in msg
    assert "gave up after" in msg and f"127.0.0.1:{port}" in msg
    assert s3_server.secret_key not in msg and s3_server.access_key not in msg


@pytest.mark.s3
@pytest.mark.slow
def test_s3_server_killed_mid_upload(outputs, s3_server):
    _root, files = outputs
    big = files[2]
    data = big.read_bytes()
    client = s3_server.client(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5)
    bucket, final = s3_server.bucket, "publish/kill/big.tif"
    old = os.urandom(1000)
    client.put_object(Bucket=bucket, Key=final, Body=old)  # a reader sees old or new only

    sent, first_part, killed = [0], threading.Event(), threading.Event()

    def progress(n: int) -> None:
        sent[0] += n
        if sent[0] > 5 * MB + MB and not first_part.is_set():
            first_part.set()  # part 1 is up (one at a time); hold part 2 until the crash
            killed.wait(30)

    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["uris"] = publish(
                [big], s3_server.uri("publish/kill"), chunk_size=5 * MB,
                max_concurrency=1, progress=progress, retry_seconds=120,
            )  # fmt: skip
        except Exception as exc:  # pragma: no cover - reported below
            result["error"] = exc

    bad: list[str] = []
    reads = [0]
    done = threading.Event()

    def watch() -> None:  # any object at the final key is whole: the old or the new
        while not done.is_set():
            try:
                body = client.get_object(Bucket=bucket, Key=final)["Body"].read()
                reads[0] += 1
                if body not in (old, data):
                    bad.append(f"{len(body)} bytes")
            except Exception:
                pass  # server down
            time.sleep(0.05)

    publisher = threading.Thread(target=run)
    watcher = threading.Thread(target=watch)
    publisher.start()
    watcher.start()
    try:
        assert first_part.wait(60), "the upload never got past its first part"
        uploads = client.list_multipart_uploads(Bucket=bucket, Prefix=f"publish/kill/{PARTIAL}/")
        assert uploads.get("Uploads"), "no multipart upload in progress"
        s3_server.kill()
        killed.set()
        time.sleep(2)
        s3_server.start()
        publisher.join(180)
        assert not publisher.is_alive()
    finally:
        killed.set()
        done.set()
        if not s3_server.running:
            s3_server.start()
        publisher.join(180)
        watcher.join(10)
    assert "error" not in result, result  # the same call retried through the outage
    assert result["uris"] == [s3_server.uri(final)]
    assert reads[0] > 0  # the watcher saw the key (the old object, later the new)
    assert client.get_object(Bucket=bucket, Key=final)["Body"].read() == data
    head = client.head_object(Bucket=bucket, Key=final)
    assert head["Metadata"]["sha256"] == _sha(data)
    assert not bad, f"incomplete objects seen at the final key: {bad}"
    assert set(s3_server.objects("publish/kill")) == {"big.tif"}
