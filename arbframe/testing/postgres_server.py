"""A throwaway PostgreSQL server for tests and benchmarks.

``PostgresServer`` runs ``initdb`` and ``pg_ctl`` from the PostgreSQL binaries installed on the machine, in a
private temporary directory, listening on 127.0.0.1 on a free port (never the system server's 5432) and on
a Unix socket inside that directory. As root, the binaries run as the ``postgres`` user (``initdb`` refuses
root) through ``runuser``, and the directory is handed to that user.

Authentication: the superuser ``postgres`` connects without a password (``trust``); every other role must
give its password (``scram-sha-256``), so :meth:`PostgresServer.create_role` makes credentials a
wrong-password test can get wrong.

In pytest::

    from arbframe.testing.postgres_server import postgres_server_fixture

    postgres_server = postgres_server_fixture()          # session-scoped fixture named by this variable

    def test_something(postgres_server):
        dsn = postgres_server.dsn

When the binaries are missing the fixture skips with the reason, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

SUPERUSER = "postgres"
DEFAULT_DB = "arbframe"
_SYSTEM_PORT = 5432


class PostgresNotAvailable(RuntimeError):
    """The PostgreSQL server binaries (initdb, pg_ctl) cannot be found or run here."""


def find_bindir() -> Path | None:
    """Directory holding initdb/pg_ctl/postgres: ``$ARBFRAME_PG_BINDIR``, ``pg_config --bindir``, then
    ``/usr/lib/postgresql/<newest>/bin``, then PATH."""
    candidates: list[str] = []
    env = os.environ.get("ARBFRAME_PG_BINDIR")
    if env:
        candidates.append(env)
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(out.stdout.strip())

    def _version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit()) or (0,)

    candidates.extend(sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).parent))
    for cand in candidates:
        path = Path(cand)
        if all(os.access(path / exe, os.X_OK) for exe in ("initdb", "pg_ctl", "postgres")):
            return path
    return None


def missing_reason() -> str | None:
    """Why a throwaway server cannot run here, or None when it can."""
    if find_bindir() is None:
        return ("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: install postgresql or set "
                "ARBFRAME_PG_BINDIR")
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "running as root and 'runuser' is missing (initdb refuses to run as root)"
        try:
            import pwd

            pwd.getpwnam(SUPERUSER)
        except KeyError:
            return f"running as root and there is no {SUPERUSER!r} OS user to run initdb as"
    return None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, never 5432."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port != _SYSTEM_PORT:
            return port
    raise RuntimeError("no free TCP port found")


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class PostgresServer:
    """One private PostgreSQL cluster in a temp dir. Use as a context manager or call start()/cleanup().

    ``stop()`` and ``start()`` may be called again and again (the same port and data are kept), which is how
    tests simulate an outage. ``fast=True`` turns off fsync and friends: the data survive a clean stop, not a
    power cut, which is all a test needs.
    """

    def __init__(self, *, base_dir: str | os.PathLike[str] | None = None, dbname: str = DEFAULT_DB,
                 fast: bool = True, settings: dict[str, str] | None = None) -> None:
        reason = missing_reason()
        if reason:
            raise PostgresNotAvailable(reason)
        bindir = find_bindir()
        assert bindir is not None
        self.bindir: Path = bindir
        self.dbname = dbname
        self.fast = fast
        self.settings = dict(settings or {})
        self._as_root = os.geteuid() == 0
        parent = str(base_dir) if base_dir is not None else os.environ.get("ARBFRAME_PG_TMPDIR") or None
        self.root = Path(tempfile.mkdtemp(prefix="arbframe-pg-", dir=parent))
        self.datadir = self.root / "data"
        self.sockdir = self.root / "sock"
        self.logfile = self.root / "server.log"
        self.port = free_port()
        self.host = "127.0.0.1"
        self._initialized = False
        self._running = False
        if self._as_root:
            import pwd

            pw = pwd.getpwnam(SUPERUSER)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        os.chmod(self.root, 0o700)

    # ------------------------------------------------------------------------------------------- processes
    def _cmd(self, exe: str, *args: str) -> list[str]:
        cmd = [str(self.bindir / exe), *args]
        if self._as_root:
            cmd = ["runuser", "-u", SUPERUSER, "--", *cmd]
        return cmd

    def _run(self, exe: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = env["LANG"] = "C.UTF-8"
        proc = subprocess.run(self._cmd(exe, *args), capture_output=True, text=True, timeout=timeout,
                              env=env, cwd=str(self.root))
        return proc

    def _initdb(self) -> None:
        self.sockdir.mkdir(exist_ok=True)
        if self._as_root:
            import pwd

            pw = pwd.getpwnam(SUPERUSER)
            os.chown(self.sockdir, pw.pw_uid, pw.pw_gid)
        proc = self._run("initdb", "-D", str(self.datadir), "-U", SUPERUSER, "-E", "UTF8", "--locale=C",
                         "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", timeout=120)
        if proc.returncode != 0:
            detail = proc.stderr.strip() or proc.stdout.strip()
            raise RuntimeError(f"initdb failed ({proc.returncode}): {detail}")
        hba = (
            "# arbframe throwaway server: superuser trusted, every other role needs its password\n"
            "local all all trust\n"
            f"host all {SUPERUSER} 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        self._write_as_owner(self.datadir / "pg_hba.conf", hba)
        self._initialized = True

    def _write_as_owner(self, path: Path, text: str) -> None:
        path.write_text(text)
        if self._as_root:
            import pwd

            pw = pwd.getpwnam(SUPERUSER)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def _options(self) -> str:
        opts = {
            "port": str(self.port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.sockdir),
            "max_connections": "60",
            "shared_buffers": "128MB",
            "log_min_messages": "warning",
        }
        if self.fast:
            opts.update({"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"})
        opts.update(self.settings)
        return " ".join(f"-c {k}={v}" for k, v in opts.items())

    def start(self, timeout: float = 60) -> PostgresServer:
        """Initialise (first time) and start; returns when the server accepts connections."""
        if self._running:
            return self
        if not self._initialized:
            self._initdb()
        for attempt in range(3):
            if _port_in_use(self.port):
                if attempt == 2:
                    raise RuntimeError(f"port {self.port} is taken")
                self.port = free_port()
                continue
            proc = self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-w",
                             "-t", str(int(timeout)), "-o", self._options(), "start", timeout=timeout + 10)
            if proc.returncode == 0:
                self._running = True
                break
            log_tail = self.log_tail()
            if attempt == 2 or ("could not bind" not in log_tail and "already in use" not in log_tail):
                detail = proc.stderr.strip()
                raise RuntimeError(f"pg_ctl start failed ({proc.returncode}): {detail}\n{log_tail}")
            self.port = free_port()
        self._ensure_database()
        return self

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        """Stop the server (``fast``: disconnect clients, clean shutdown; ``immediate``: like a crash)."""
        if not self._running:
            return
        proc = self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "-t", str(int(timeout)), "stop",
                         timeout=timeout + 10)
        if proc.returncode != 0 and "is the server running" not in proc.stderr:
            raise RuntimeError(f"pg_ctl stop failed ({proc.returncode}): {proc.stderr.strip()}")
        self._running = False

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._running

    def cleanup(self) -> None:
        """Stop (if running) and delete the whole directory."""
        with contextlib.suppress(Exception):
            self.stop(mode="immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # ----------------------------------------------------------------------------------------------- access
    def dsn_for(self, dbname: str | None = None, user: str = SUPERUSER, password: str | None = None) -> str:
        """A ``postgresql://`` URL for ``dbname`` (default: the server's database)."""
        from urllib.parse import quote

        auth = quote(user, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(dbname or self.dbname, safe='')}"

    @property
    def dsn(self) -> str:
        """Superuser URL for the server's database (trust auth: no password)."""
        return self.dsn_for()

    @property
    def endpoint(self) -> str:
        """``host:port/db``, as health checks print it."""
        return f"{self.host}:{self.port}/{self.dbname}"

    def connect(self, dbname: str | None = None, **kwargs: Any) -> Any:
        """A psycopg2 connection as the superuser (autocommit)."""
        import psycopg2

        conn = psycopg2.connect(self.dsn_for(dbname), connect_timeout=5, **kwargs)
        conn.autocommit = True
        return conn

    def execute(self, query: Any, params: Any = None, dbname: str | None = None) -> list[tuple[Any, ...]]:
        """Run one statement as the superuser; returns the rows (empty when it returns none)."""
        conn = self.connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return list(cur.fetchall()) if cur.description else []
        finally:
            conn.close()

    def _ensure_database(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = self.connect("postgres")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.dbname,))
                if cur.fetchone() is None:
                    from psycopg2 import sql

                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.dbname)))
        finally:
            conn.close()

    def create_database(self, name: str) -> str:
        """Create (or re-create empty) a database; returns its superuser DSN."""
        from psycopg2 import sql

        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        self.execute(drop, dbname="postgres")
        self.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)), dbname="postgres")
        return self.dsn_for(name)

    def create_role(self, name: str, password: str, *, dbname: str | None = None,
                    superuser: bool = False) -> str:
        """Create a login role that must authenticate with ``password`` and owns nothing special, with the
        right to create schemas in ``dbname``; returns its DSN (password included)."""
        from psycopg2 import sql

        self.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}" + (" SUPERUSER" if superuser else "")).format(
                sql.Identifier(name), sql.Literal(password)
            )
        )
        db = dbname or self.dbname
        ident = sql.Identifier(name)
        self.execute(sql.SQL("GRANT ALL ON DATABASE {} TO {}").format(sql.Identifier(db), ident))
        self.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(sql.Identifier(name)), dbname=db)
        return self.dsn_for(db, user=name, password=password)


# ---------------------------------------------------------------------------------------------------- pytest
def skip_or_fail(reason: str) -> None:
    """pytest.skip with ``reason``, or pytest.fail under CI=true (a CI run must not skip silently)."""
    import pytest

    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true and the throwaway PostgreSQL cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def start_or_skip(**kwargs: Any) -> PostgresServer:
    """A started server, or skip (fail under CI=true) with the reason it cannot run."""
    reason = missing_reason()
    if reason:
        skip_or_fail(reason)
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        skip_or_fail("psycopg2 is not installed (pip install psycopg2-binary)")
    server = PostgresServer(**kwargs)
    try:
        return server.start()
    except Exception:
        server.cleanup()
        raise


def postgres_server_fixture(scope: str = "session", **kwargs: Any) -> Callable[..., Iterator[PostgresServer]]:
    """Build a pytest fixture yielding a started :class:`PostgresServer`; assign it to a module/conftest name.

    A test that stops the server must start it again (``start()`` is idempotent); the server and its
    directory are removed at the end of the scope.
    """
    import pytest

    @pytest.fixture(scope=scope)  # type: ignore[call-overload]  # scope: any pytest scope name
    def _postgres_server() -> Iterator[PostgresServer]:
        server = start_or_skip(**kwargs)
        try:
            yield server
        finally:
            server.cleanup()

    return _postgres_server
