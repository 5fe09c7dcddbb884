"""A loopback TCP proxy that puts a fixed round-trip time between a client and a server.

Object storage in another building answers 20-100 ms after each request, however
fast the node; SeaweedFS on loopback answers in a millisecond. Run between them,
this proxy holds every chunk of bytes half the round trip in each direction
before passing it on (in order, with no bandwidth limit), so a request/response
pair on a kept-alive connection costs one round trip more, as it would far away,
and a reader that waits for one response before sending the next request pays
the round trip each time.

It runs in its own process (``python -m tests.netproxy``, or :class:`DelayProxy`
which starts that), so it takes no share of the GIL of the reader it is timing.
The round trip can be changed while it runs (a line on its standard input), so
one endpoint serves a benchmark's every delay::

    with DelayProxy(upstream_port=9000, rtt_ms=50) as proxy:
        ...  # AWS_ENDPOINT_URL=http://127.0.0.1:{proxy.port}
        proxy.set_rtt(100)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["ChildProxy", "DelayProxy", "free_port", "serve", "stop_process"]

_CHUNK = 256 * 1024
_delay = [0.0]  # seconds each chunk is held, each way: half the round trip
_counts = {"requests": 0, "connections": 0, "bytes_down": 0}
_VERBS = (b"GET ", b"HEAD ", b"PUT ", b"POST ", b"DELETE ")
_ROOT = Path(__file__).resolve().parents[1]


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: bool) -> None:
    """Copy ``reader`` to ``writer``, each chunk sent half a round trip after it arrived;
    requests (chunks opening with an HTTP verb) and bytes down are counted."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def receive() -> None:
        try:
            while data := await reader.read(_CHUNK):
                if upstream:
                    _counts["requests"] += sum(data.count(b"\r\n" + v) for v in _VERBS)
                    _counts["requests"] += data.startswith(_VERBS)
                else:
                    _counts["bytes_down"] += len(data)
                queue.put_nowait((loop.time() + _delay[0], data))
        except (ConnectionError, OSError):
            pass
        queue.put_nowait((loop.time() + _delay[0], b""))

    receiving = asyncio.ensure_future(receive())
    try:
        while True:
            due, data = await queue.get()
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass
    finally:
        receiving.cancel()


async def _handle(
    client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, port: int
) -> None:
    try:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        client_w.close()
        return
    for w in (client_w, server_w):
        sock = w.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    _counts["connections"] += 1
    await asyncio.gather(_pump(client_r, server_w, True), _pump(server_r, client_w, False))
    for w in (client_w, server_w):
        with contextlib.suppress(OSError):
            w.close()


async def serve(listen_port: int, upstream_port: int, rtt_ms: float) -> None:
    """Proxy 127.0.0.1:``listen_port`` to 127.0.0.1:``upstream_port`` until cancelled;
    each line on standard input sets a new round trip in ms."""
    _delay[0] = rtt_ms / 2000.0

    def control() -> None:
        for line in sys.stdin:
            if line.strip() == "counts":
                print(" ".join(f"{k}={v}" for k, v in _counts.items()), flush=True)
            with contextlib.suppress(ValueError):
                _delay[0] = float(line) / 2000.0

    threading.Thread(target=control, daemon=True).start()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _handle(r, w, upstream_port)

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port, backlog=1024)
    async with server:
        print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
        await server.serve_forever()


class ChildProxy:
    """A proxy module run in a child process on a free port; a context manager.

    The child prints ``listening on PORT`` when ready, takes control lines on its
    standard input and answers ``counts`` with ``key=value`` pairs."""

    module = "tests.netproxy"

    def __init__(self, upstream_port: int, *options: str) -> None:
        self.upstream_port, self.options = upstream_port, options
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("the proxy is not running")
        return self._proc.pid

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        args = [sys.executable, "-m", self.module, str(self.port), str(self.upstream_port),
                *self.options]  # fmt: skip
        self._proc = subprocess.Popen(args, cwd=_ROOT, stdout=subprocess.PIPE,
                                      stdin=subprocess.PIPE)  # fmt: skip
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().decode()
        if not line.startswith("listening"):
            self.stop()
            raise RuntimeError(f"{self.module} to {self.upstream_port} did not start: {line!r}")
        return self

    def send(self, line: str) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(f"{line}\n".encode())
        self._proc.stdin.flush()

    def counts(self) -> dict[str, int]:
        """What the proxy has seen and done so far (requests, connections, ...)."""
        assert self._proc is not None and self._proc.stdout
        self.send("counts")
        line = self._proc.stdout.readline().decode().split()
        return {k: int(v) for k, v in (part.split("=") for part in line)}

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        stop_process(proc)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class DelayProxy(ChildProxy):
    """The delay proxy in a child process."""

    def __init__(self, upstream_port: int, rtt_ms: float) -> None:
        super().__init__(upstream_port, str(rtt_ms))
        self.rtt_ms = rtt_ms

    def set_rtt(self, rtt_ms: float) -> None:
        """A new round trip for every chunk from now on."""
        self.send(str(rtt_ms))
        self.rtt_ms = rtt_ms
        time.sleep(0.1)  # read by the proxy's control thread


def stop_process(proc: subprocess.Popen[bytes] | None, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; None: nothing to stop."""
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure_rtt(port: int, n: int = 5) -> float:
    """Median seconds from a byte sent to its echo's first byte, through a proxy to an
    echo server: what the proxy adds (for checking it)."""
    times = []
    with socket.create_connection(("127.0.0.1", port)) as s:
        for _ in range(n):
            start = time.perf_counter()
            s.sendall(b"x")
            s.recv(1)
            times.append(time.perf_counter() - start)
    return sorted(times)[n // 2]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("listen_port", type=int)
    parser.add_argument("upstream_port", type=int)
    parser.add_argument("rtt_ms", type=float)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.listen_port, args.upstream_port, args.rtt_ms))
