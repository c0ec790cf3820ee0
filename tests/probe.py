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
