"""Waiting for a started `lsr serve` process to answer /readyz (used by the load benchmark and the tests)."""

from __future__ import annotations

import subprocess
import time

import httpx


def wait_until_ready(base_url: str, server: subprocess.Popen, timeout: float = 300.0) -> None:
    """Poll ``base_url``/readyz until it answers 200; raise RuntimeError with the server's output if it exits
    first, TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            stream = server.stderr or server.stdout
            raise RuntimeError(f"the server exited: {(stream.read() if stream else '')[-2000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the server did not become ready in {timeout:.0f} s")
        time.sleep(0.3)


def serve_in_thread(app, timeout: float = 120.0):
    """uvicorn serving ``app`` on a free 127.0.0.1 port in a daemon thread: a context manager yielding the base URL;
    the server stops when it exits."""
    import contextlib
    import socket
    import threading

    import uvicorn

    @contextlib.contextmanager
    def running():
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(timeout=10)

    return running()
