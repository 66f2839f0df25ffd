"""Throwaway Prometheus servers and exporters for tests and benchmarks.

The real binaries from the Debian packages (``prometheus``, ``promtool``, ``prometheus-postgres-exporter``,
``prometheus-redis-exporter``) are started on free ports of 127.0.0.1 with their data in a private temporary
directory -- never the system daemons' 9090/9187/9121, never a Docker engine.

In pytest::

    from arbframe.testing.prometheus_server import PrometheusServer, start_or_skip

    def test_scrape(tmp_path):
        with start_or_skip(PrometheusServer, targets={"arbitrage-metrics": ["127.0.0.1:8123"]}) as prom:
            prom.wait_for_target("arbitrage-metrics")
            assert prom.query('up{job="arbitrage-metrics"}')[0]["value"][1] == "1"

When a binary is missing the helpers skip with the reason, except under ``CI=true``, where they fail.
Binaries are looked up on PATH, then ``/usr/bin`` and ``/usr/sbin``; ``ARBFRAME_PROMETHEUS_BIN``,
``ARBFRAME_PROMTOOL_BIN``, ``ARBFRAME_POSTGRES_EXPORTER_BIN``, ``ARBFRAME_REDIS_EXPORTER_BIN`` and
``ARBFRAME_AMTOOL_BIN`` override.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T", bound="ServedBinary")

#: binary name -> (environment override, Debian package)
BINARIES: dict[str, tuple[str, str]] = {
    "prometheus": ("ARBFRAME_PROMETHEUS_BIN", "prometheus"),
    "promtool": ("ARBFRAME_PROMTOOL_BIN", "prometheus"),
    "prometheus-postgres-exporter": ("ARBFRAME_POSTGRES_EXPORTER_BIN", "prometheus-postgres-exporter"),
    "prometheus-redis-exporter": ("ARBFRAME_REDIS_EXPORTER_BIN", "prometheus-redis-exporter"),
    "docker-compose": ("ARBFRAME_DOCKER_COMPOSE_BIN", "docker-compose"),
    "amtool": ("ARBFRAME_AMTOOL_BIN", "prometheus-alertmanager"),
}
_RESERVED_PORTS = {8000, 9090, 9093, 9121, 9187, 3000, 5432, 6379}


class BinaryNotAvailable(RuntimeError):
    """A binary the helper needs is not installed here."""


def find_binary(name: str) -> str | None:
    """Path of ``name`` (see :data:`BINARIES` for the override variables), or None."""
    env_var, _ = BINARIES.get(name, ("", ""))
    override = os.environ.get(env_var) if env_var else None
    if override:
        return override if os.access(override, os.X_OK) else None
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/bin", "/usr/sbin", "/usr/local/bin"):
        cand = os.path.join(folder, name)
        if os.access(cand, os.X_OK):
            return cand
    return None


def missing_reason(*names: str) -> str | None:
    """Why one of ``names`` cannot run here (with the package to install), or None."""
    for name in names:
        if find_binary(name) is None:
            package = BINARIES.get(name, ("", name))[1]
            return f"{name} not found: install the Debian package {package!r} (apt-get install {package})"
    return None


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """pytest.skip with ``reason``, or pytest.fail under CI=true (a CI run must not skip silently)."""
    import pytest

    if in_ci():
        pytest.fail(f"CI=true and a required binary cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def require(*names: str) -> dict[str, str]:
    """Paths of ``names``, or skip (fail under CI=true) naming the package to install."""
    reason = missing_reason(*names)
    if reason:
        skip_or_fail(reason)
    return {name: find_binary(name) or name for name in names}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, never one of the stack's well-known ports."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _RESERVED_PORTS:
            return port
    raise RuntimeError("no free TCP port found")


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """``(status, body)`` of a GET; HTTP errors return their status instead of raising."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns a truthy value (returned) or ``timeout`` passes (TimeoutError)."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # not up yet
            last_exc = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}{detail}")
        time.sleep(interval)


def metric_values(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Samples of ``name`` in a Prometheus text exposition: ``[(labels, value), ...]``."""
    from prometheus_client.parser import text_string_to_metric_families

    found = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found.append((dict(sample.labels), float(sample.value)))
    return found


class ServedBinary(abc.ABC):
    """A long-running binary serving HTTP on a free port of 127.0.0.1, with its files in a temp dir."""

    binary = ""
    ready_path = "/metrics"

    def __init__(self, *, base_dir: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None):
        path = find_binary(self.binary)
        if path is None:
            raise BinaryNotAvailable(missing_reason(self.binary) or self.binary)
        self.path = path
        self.root = Path(tempfile.mkdtemp(prefix=f"arbframe-{self.binary}-", dir=base_dir))
        self.port = free_port()
        self.host = "127.0.0.1"
        self.logfile = self.root / "server.log"
        self.extra_env = dict(env or {})
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @abc.abstractmethod
    def args(self) -> list[str]:
        """Command-line arguments of the binary (each subclass says how it serves)."""

    def start(self: T, timeout: float = 30) -> T:
        if self._proc is not None:
            return self
        env = {**os.environ, **self.extra_env}
        with open(self.logfile, "ab") as log:
            self._proc = subprocess.Popen(
                [self.path, *self.args()], stdout=log, stderr=subprocess.STDOUT, cwd=self.root, env=env,
                start_new_session=True,
            )

        def ready() -> bool:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"{self.binary} exited with {self._proc.returncode}:\n{self.log_tail()}")
            return http_get(self.url + self.ready_path, timeout=2)[0] == 200

        try:
            wait_until(ready, timeout, f"{self.binary} on {self.address}")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self: T) -> T:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def scrape(self, path: str = "/metrics") -> str:
        status, body = http_get(self.url + path, timeout=10)
        if status != 200:
            raise RuntimeError(f"GET {self.url + path} answered {status}: {body[:300]}")
        return body


class PrometheusServer(ServedBinary):
    """``prometheus`` with a generated config: ``targets`` maps job name -> ``["host:port", ...]``.

    Pass ``config_text`` instead to use a config file of your own (``rule_files`` resolve against the temp dir;
    copy them there with :meth:`add_file`).
    """

    binary = "prometheus"
    ready_path = "/-/ready"

    def __init__(
        self,
        targets: Mapping[str, Sequence[str]] | None = None,
        *,
        scrape_interval: str = "1s",
        config_text: str | None = None,
        rule_files: Sequence[str | os.PathLike[str]] = (),
        base_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(base_dir=base_dir)
        self.config_file = self.root / "prometheus.yml"
        self.data_dir = self.root / "data"
        if config_text is None:
            config_text = self.config_for(dict(targets or {}), scrape_interval, self._copy_rules(rule_files))
        self.config_file.write_text(config_text)

    def _copy_rules(self, rule_files: Sequence[str | os.PathLike[str]]) -> list[str]:
        names = []
        for rule_file in rule_files:
            src = Path(rule_file)
            shutil.copy(src, self.root / src.name)
            names.append(src.name)
        return names

    def add_file(self, src: str | os.PathLike[str]) -> Path:
        dst = self.root / Path(src).name
        shutil.copy(src, dst)
        return dst

    @staticmethod
    def config_for(targets: Mapping[str, Sequence[str]], scrape_interval: str, rule_files: Sequence[str]) -> str:
        import yaml

        config: dict[str, Any] = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": list(addrs)}]} for job, addrs in targets.items()
            ],
        }
        if rule_files:
            config["rule_files"] = list(rule_files)
        return yaml.safe_dump(config, sort_keys=False)

    def args(self) -> list[str]:
        return [
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--web.listen-address={self.address}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]

    # -- HTTP API --------------------------------------------------------------------------------------
    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        status, body = http_get(f"{self.url}/api/v1/{path}" + (f"?{query}" if query else ""), timeout=10)
        payload = json.loads(body)
        if status != 200 or payload.get("status") != "success":
            raise RuntimeError(f"Prometheus API {path} {params}: {status} {body[:300]}")
        return payload["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the ``result`` list of a vector answer."""
        data = self.api("query", query=expr)
        return data["result"] if isinstance(data.get("result"), list) else [data["result"]]

    def targets(self) -> list[dict[str, Any]]:
        return self.api("targets")["activeTargets"]

    def wait_for_target(self, job: str, timeout: float = 20) -> dict[str, Any]:
        """Wait until a target of ``job`` has been scraped successfully; returns it."""

        def up() -> dict[str, Any] | None:
            for target in self.targets():
                if target["labels"].get("job") == job and target.get("health") == "up":
                    return target
            return None

        return wait_until(up, timeout, f"a successful scrape of job {job!r}", interval=0.1)

    def wait_for_query(self, expr: str, timeout: float = 20) -> list[dict[str, Any]]:
        """Wait until ``expr`` returns a non-empty vector; returns it."""
        return wait_until(lambda: self.query(expr), timeout, f"query {expr!r} to return data", interval=0.1)


class PostgresExporter(ServedBinary):
    """``prometheus-postgres-exporter`` against ``dsn`` (``DATA_SOURCE_NAME``)."""

    binary = "prometheus-postgres-exporter"

    def __init__(self, dsn: str, *, base_dir: str | os.PathLike[str] | None = None) -> None:
        if "sslmode=" not in dsn:
            dsn += ("&" if "?" in dsn else "?") + "sslmode=disable"
        super().__init__(base_dir=base_dir, env={"DATA_SOURCE_NAME": dsn})

    def args(self) -> list[str]:
        return [f"--web.listen-address={self.address}", "--log.level=warn"]


class RedisExporter(ServedBinary):
    """``prometheus-redis-exporter`` against ``redis_url`` (``redis://host:port``)."""

    binary = "prometheus-redis-exporter"

    def __init__(self, redis_url: str, *, base_dir: str | os.PathLike[str] | None = None) -> None:
        super().__init__(base_dir=base_dir)
        self.redis_url = redis_url

    def args(self) -> list[str]:
        return ["-redis.addr", self.redis_url, "-web.listen-address", self.address]


def start_or_skip(cls: type[T], *args: Any, **kwargs: Any) -> T:
    """A started ``cls(*args, **kwargs)``, or skip (fail under CI=true) naming the missing binary."""
    require(cls.binary)
    server = cls(*args, **kwargs)
    try:
        return server.start()
    except Exception:
        server.cleanup()
        raise


def run_tool(name: str, *args: str, timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``promtool`` / ``amtool`` / ``docker-compose`` (skips or fails like the servers when missing)."""
    path = require(name)[name]
    with contextlib.suppress(KeyError):
        kwargs["env"] = {**os.environ, **kwargs.pop("env")}
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=timeout, **kwargs)
