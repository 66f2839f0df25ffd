"""A throwaway ``redis-server`` for tests and benchmarks: free port, temp dir, no persistence.

Never touches a system Redis (port 6379 is never used). The server is a child process that tests may stop and
start again on the same port to exercise outages::

    from arbframe.testing.redis_server import redis_server  # noqa: F401  (the pytest fixture)

    def test_something(redis_server):
        url = redis_server.url              # redis://127.0.0.1:<port>/0
        redis_server.stop()                 # the server is down ...
        redis_server.start()                # ... and back, same port, empty

Without a ``redis-server`` binary the fixture skips with the reason, except under ``CI=true`` where a missing
binary is a failure (CI must run these tests). ``REDIS_SERVER`` may name the binary explicitly.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "RedisServer",
    "RedisServerUnavailable",
    "find_redis_cli",
    "find_redis_server",
    "free_port",
    "redis_server",
    "require_redis_server",
]

_SYSTEM_PORT = 6379


class RedisServerUnavailable(RuntimeError):
    """The redis-server binary is missing or the server would not start."""


def find_redis_server() -> str | None:
    explicit = os.environ.get("REDIS_SERVER")
    if explicit:
        return explicit if Path(explicit).exists() else None
    return shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/local/bin/redis-server") if Path(p).exists()), None
    )


def find_redis_cli() -> str | None:
    return shutil.which("redis-cli") or next(
        (p for p in ("/usr/bin/redis-cli", "/usr/local/bin/redis-cli") if Path(p).exists()), None
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A currently free TCP port on ``host`` (never the system Redis port)."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port != _SYSTEM_PORT:
            return port
    raise RedisServerUnavailable("no free port found")


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _ping(host: str, port: int, password: str | None, timeout: float = 0.2) -> bool:
    """Raw RESP PING, so the fixture does not need redis-py."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            if password:
                s.sendall(f"AUTH {password}\r\n".encode())
                if not s.recv(64).startswith(b"+OK"):
                    return False
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server child process. ``start()`` / ``stop()`` may be called repeatedly; the port stays."""

    def __init__(
        self,
        *,
        binary: str | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        password: str | None = None,
        workdir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        found = binary or find_redis_server()
        if not found:
            raise RedisServerUnavailable(
                "redis-server is not installed (apt-get install redis-server, or set REDIS_SERVER=/path)"
            )
        if port == _SYSTEM_PORT:
            raise ValueError("refusing to use port 6379: that is the system Redis")
        self.binary = found
        self.host = host
        self.port = port or free_port(host)
        self.password = password
        self.startup_timeout = startup_timeout
        self._own_dir = workdir is None
        if workdir is None:
            workdir = tempfile.mkdtemp(prefix="arbframe-redis-")
        self.workdir = Path(workdir)
        self.proc: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------------------------------------- urls
    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def url_for_db(self, db: int) -> str:
        return self.url.rsplit("/", 1)[0] + f"/{db}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def logfile(self) -> Path:
        return self.workdir / "redis.log"

    # ------------------------------------------------------------------------------------------- lifecycle
    def _argv(self) -> list[str]:
        argv = [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.workdir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", str(self.logfile),
            "--databases", "16",
        ]
        if self.password:
            argv += ["--requirepass", self.password]
        return argv

    def start(self) -> RedisServer:
        if self.running:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            self._argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + self.startup_timeout
        delay = 0.005
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = (self.proc.stderr.read() if self.proc.stderr else b"").decode(errors="replace")
                log = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
                self.proc = None
                raise RedisServerUnavailable(f"redis-server exited at start on port {self.port}: {err}{log}")
            if _ping(self.host, self.port, self.password):
                return self
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        self.stop()
        raise RedisServerUnavailable(
            f"redis-server did not answer on port {self.port} within {self.startup_timeout}s"
        )

    def stop(self) -> None:
        """Kill the server (like a crash or ``docker-compose stop``); data is lost (no persistence)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc.stderr:
            proc.stderr.close()

    def restart(self) -> RedisServer:
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.cleanup()

    # ------------------------------------------------------------------------------------------------ tools
    def cli(self, *args: str, timeout: float = 10.0) -> str:
        """Run ``redis-cli -p PORT args...`` and return its stdout (stripped), as a person would see it."""
        cli = find_redis_cli()
        if cli is None:
            raise RedisServerUnavailable("redis-cli is not installed")
        argv = [cli, "-h", self.host, "-p", str(self.port)]
        if self.password:
            argv += ["--no-auth-warning", "-a", self.password]
        out = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=timeout, check=True)
        return out.stdout.strip()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"RedisServer(port={self.port}, {state})"


def require_redis_server() -> str:
    """The redis-server binary, or skip the test (fail under ``CI=true``) with the reason."""
    import pytest

    found = find_redis_server()
    if found is None:
        reason = "redis-server binary not found (install redis-server or set REDIS_SERVER)"
        if _ci():
            pytest.fail(f"{reason}; CI=true requires it")
        pytest.skip(reason)
    return found


@contextlib.contextmanager
def running_redis_server(**kwargs: Any) -> Iterator[RedisServer]:
    server = RedisServer(binary=require_redis_server(), **kwargs)
    try:
        yield server.start()
    finally:
        server.cleanup()


try:
    import pytest as _pytest
except ImportError:  # pragma: no cover - RedisServer works without pytest (benchmarks)
    _pytest = None  # type: ignore[assignment]

if _pytest is not None:

    @_pytest.fixture
    def redis_server() -> Iterator[RedisServer]:
        """A fresh, empty redis-server on a free port for one test; stopped and removed afterwards."""
        with running_redis_server() as server:
            yield server
