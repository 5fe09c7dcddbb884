"""A loopback HTTP proxy that makes an S3 server behave as object storage does under load.

Between a client and a server on loopback it reads each HTTP/1.1 request and,
drawn at random (seeded) per request, does what a busy object store does:

- ``slowdown``: answers ``503 Slow Down`` with S3's ``SlowDown`` error body,
  without asking the server (the connection stays usable);
- ``reset``: resets the connection (TCP RST) instead of answering;
- ``stall``: answers nothing for ``stall_s`` seconds, then closes: longer than
  the client's timeout, it is a stalled response;
- otherwise passes the request to the server and its response back.

It runs in its own process (``python -m tests.faultproxy``, or :class:`FaultProxy`)
and counts requests and each kind of fault (``counts()``), in all and, as
``gdal_*``, those GDAL sent (the imagery's reads, by their User-Agent)::

    with FaultProxy(upstream_port=9000, slowdown=0.05, reset=0.01, stall=0.01) as proxy:
        ...  # AWS_ENDPOINT_URL=http://127.0.0.1:{proxy.port}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import socket
import struct
import sys
import threading

from tests.netproxy import ChildProxy

__all__ = ["SLOWDOWN_BODY", "FaultProxy", "serve"]

SLOWDOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_counts = {"requests": 0, "passed": 0, "slowdown": 0, "reset": 0, "stall": 0}
_counts |= {f"gdal_{k}": 0 for k in ("requests", "slowdown", "reset", "stall")}


class _Closed(Exception):
    """The peer closed its side between messages."""


async def _head(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str]]:
    """An HTTP message's start line and headers (names lower-cased), as raw bytes and parsed."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        raise _Closed from exc
    lines = raw.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return raw, headers


async def _body(reader: asyncio.StreamReader, headers: dict[str, str], until_eof: bool) -> bytes:
    """A message body as framed on the wire (chunked kept chunked)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            parts.append(size_line)
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                parts.append(await reader.readuntil(b"\r\n"))  # no trailers from S3
                return b"".join(parts)
            parts.append(await reader.readexactly(size + 2))
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    return await reader.read() if until_eof else b""


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _handle(
    client_r: asyncio.StreamReader,
    client_w: asyncio.StreamWriter,
    port: int,
    odds: dict[str, float],
    stall_s: float,
    rng: random.Random,
) -> None:
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    try:
        while True:
            raw, headers = await _head(client_r)
            if headers.get("expect", "").lower() == "100-continue":  # boto3's PUTs
                client_w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                await client_w.drain()
            body = await _body(client_r, headers, until_eof=False)
            gdal = "GDAL" in headers.get("user-agent", "")  # the imagery, not the store
            _counts["requests"] += 1
            _counts["gdal_requests"] += gdal
            draw, fault = rng.random(), None
            for name, p in odds.items():
                if draw < p:
                    fault = name
                    break
                draw -= p
            if fault is not None:
                _counts[fault] += 1
                _counts[f"gdal_{fault}"] += gdal
            if fault == "reset":
                _reset(client_w)
                return
            if fault == "stall":
                await asyncio.sleep(stall_s)
                return
            if fault == "slowdown":
                client_w.write(
                    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                    + f"Content-Length: {len(SLOWDOWN_BODY)}\r\n\r\n".encode()
                    + SLOWDOWN_BODY
                )
                await client_w.drain()
                continue
            if upstream is None:
                upstream = await asyncio.open_connection("127.0.0.1", port)
            server_r, server_w = upstream
            server_w.write(raw + body)
            await server_w.drain()
            head, response = await _head(server_r)
            while (status := int(head.split(b" ", 2)[1])) == 100:  # answered above already
                head, response = await _head(server_r)
            method = raw.split(b" ", 1)[0]
            bodyless = method == b"HEAD" or status in (204, 304) or status < 200
            payload = b"" if bodyless else await _body(server_r, response, until_eof=True)
            client_w.write(head + payload)
            await client_w.drain()
            _counts["passed"] += 1
            if "close" in response.get("connection", "").lower():
                return
    except (_Closed, ConnectionError, OSError, asyncio.IncompleteReadError, ValueError):
        return
    finally:
        for w in (client_w, upstream[1] if upstream else None):
            if w is not None:
                with contextlib.suppress(OSError, RuntimeError):
                    w.close()


async def serve(
    listen_port: int, upstream_port: int, odds: dict[str, float], stall_s: float, seed: int
) -> None:
    """Proxy 127.0.0.1:``listen_port`` to 127.0.0.1:``upstream_port`` until cancelled."""
    rng = random.Random(seed)

    def control() -> None:
        for line in sys.stdin:
            if line.strip() == "counts":
                print(" ".join(f"{k}={v}" for k, v in _counts.items()), flush=True)

    threading.Thread(target=control, daemon=True).start()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _handle(r, w, upstream_port, odds, stall_s, rng)

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port, backlog=1024)
    async with server:
        print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
        await server.serve_forever()


class FaultProxy(ChildProxy):
    """The fault proxy in a child process; odds are per request, each in [0, 1]."""

    module = "tests.faultproxy"

    def __init__(
        self,
        upstream_port: int,
        *,
        slowdown: float = 0.0,
        reset: float = 0.0,
        stall: float = 0.0,
        stall_s: float = 5.0,
        seed: int = 0,
    ) -> None:
        super().__init__(upstream_port, f"--slowdown={slowdown}", f"--reset={reset}",
                         f"--stall={stall}", f"--stall-s={stall_s}", f"--seed={seed}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("listen_port", type=int)
    parser.add_argument("upstream_port", type=int)
    for fault in ("slowdown", "reset", "stall"):
        parser.add_argument(f"--{fault}", type=float, default=0.0)
    parser.add_argument("--stall-s", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    odds = {"slowdown": args.slowdown, "reset": args.reset, "stall": args.stall}
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.listen_port, args.upstream_port, odds, args.stall_s, args.seed))
