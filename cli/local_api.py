"""The API in a thread of this process, on a free local port (`hpo demo`, tests, benchmarks)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from cli.errors import CliError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_in_thread(port: int, timeout: float = 60) -> Any:
    """Start `hpo serve`'s app on 127.0.0.1:``port`` in a daemon thread; returns its uvicorn Server.

    Returns once the server accepts requests (set ``server.should_exit = True`` to stop it);
    CliError if it has not started within ``timeout`` seconds.
    """
    import uvicorn

    config = uvicorn.Config("service.api:create_app", factory=True, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise CliError("the API did not start; see the messages above")
        time.sleep(0.1)
    return server
