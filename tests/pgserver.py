"""A throwaway PostgreSQL server for the tests: initdb, pg_ctl start, stop, remove.

The tests of the PostgreSQL ledger run against a real server, never a mock.
``running_server()`` makes one in a fresh temporary folder: ``initdb`` into
``data/``, the Unix socket in the folder itself, and loopback TCP on a free port
(the concurrency test connects over TCP, as offices do). On the way out it is
stopped (``pg_ctl stop -m fast``) and its folder removed, whatever happened.

PostgreSQL refuses to run as root. CI runs the suite as root, so there the
server runs as the unprivileged ``postgres`` user the Debian package creates,
and its folder (data, socket, log) belongs to that user; run as anyone else, the
server runs as that user. The child processes drop to ``postgres`` through
``subprocess``'s own ``user=``/``group=``/``extra_groups=`` (setuid and setgid
before exec, like ``setpriv``), so no ``su``/``runuser`` and no shell is
involved.

Connections: the Unix socket trusts every local user; TCP asks for the
superuser's password (SCRAM), so a test can check what a wrong password does.

pytest-postgresql was considered and not used: it starts ``pg_ctl`` as the
user running the tests and has no way to run the server as another OS user,
which is what CI as root needs; it would also add mirakuru and port-for for
what ~150 lines here do.
"""

from __future__ import annotations

import contextlib
import getpass
import glob
import os
import pwd
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

#: The OS user (and database superuser) the server runs as when the tests run as root.
SERVER_USER_AS_ROOT = "postgres"
#: Seconds pg_ctl waits for the server to start or stop.
PG_CTL_TIMEOUT = 60


class PostgresMissing(RuntimeError):
    """PostgreSQL's server programs are not installed (or cannot run here)."""


def find_bindir() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``.

    ``pg_config --bindir`` names it where pg_config knows; Debian installs the
    server under /usr/lib/postgresql/VERSION/bin, where the newest is taken.
    """
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            found = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=True
            ).stdout.strip()
            candidates.append(Path(found))
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(
        map(Path, versions), key=lambda p: _version_key(p.parent.name), reverse=True
    )
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise PostgresMissing(
        "PostgreSQL is not installed (no initdb/pg_ctl from `pg_config --bindir` or in "
        "/usr/lib/postgresql/*/bin). Install the Debian package `postgresql` "
        "(listed in .ci/debian-packages)."
    )


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PgServer:
    """A running throwaway server, and how to reach it."""

    bindir: Path
    folder: Path
    port: int
    #: the database superuser: the OS user the server runs as
    superuser: str
    #: the superuser's password (TCP connections need it; the socket does not)
    password: str
    #: ``subprocess`` keywords that run a server program as the server's OS user
    as_server_user: dict[str, Any]

    @property
    def datadir(self) -> Path:
        return self.folder / "data"

    @property
    def socket_dir(self) -> Path:
        return self.folder

    @property
    def logfile(self) -> Path:
        return self.folder / "server.log"

    def url(self, dbname: str = "postgres", *, password: str | None = None) -> str:
        """``postgresql://`` URL over loopback TCP (with the superuser's password by default)."""
        secret = self.password if password is None else password
        return (
            f"postgresql://{quote(self.superuser, safe='')}:{quote(secret, safe='')}"
            f"@127.0.0.1:{self.port}/{quote(dbname, safe='')}"
        )

    def socket_dsn(self, dbname: str = "postgres") -> str:
        """libpq keyword string over the Unix socket (trusted: no password)."""
        return f"host={self.socket_dir} port={self.port} user={self.superuser} dbname={dbname}"

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        """Run SQL as the superuser through the socket, outside a transaction."""
        import psycopg

        with psycopg.connect(self.socket_dsn(dbname), autocommit=True) as conn:
            conn.execute(sql.encode())

    def create_database(self, prefix: str = "test") -> str:
        """A new, empty database with a fresh name; its name."""
        name = f"{prefix}_{secrets.token_hex(6)}"
        self.execute(f'CREATE DATABASE "{name}"')
        return name

    def pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``pg_ctl ARGS -D DATA`` as the server's user."""
        return subprocess.run(
            [str(self.bindir / "pg_ctl"), *args, "-D", str(self.datadir)],
            capture_output=True,
            text=True,
            check=check,
            timeout=PG_CTL_TIMEOUT + 30,
            cwd=self.folder,
            env=_server_env(),
            **self.as_server_user,
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = " ".join(
            shlex.quote(o)
            for o in (
                "-k",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                # No fsync: a test server's data need not survive a power cut. A
                # killed server still loses nothing (the OS keeps what was written).
                "-c",
                "fsync=off",
            )
        )
        started = self.pg_ctl(
            "start",
            "-w",
            "-t",
            str(PG_CTL_TIMEOUT),
            "-l",
            str(self.logfile),
            "-o",
            options,
            check=False,
        )
        if started.returncode != 0:
            raise RuntimeError(
                f"pg_ctl start failed ({started.returncode}): {started.stderr.strip()}\n"
                f"{self.log_tail()}"
            )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` rolls back open transactions, ``immediate`` is a crash."""
        self.pg_ctl("stop", "-w", "-t", str(PG_CTL_TIMEOUT), "-m", mode, check=False)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.logfile.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])


def _server_env() -> dict[str, str]:
    """The environment for server programs: no PG* variables of the caller, C locale."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _as_user(name: str) -> dict[str, Any]:
    """``subprocess`` keywords that run a child as ``name`` (root only)."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise PostgresMissing(
            f"The tests run as root, and PostgreSQL refuses to: they run the server as the "
            f"user {name!r}, which does not exist. Install the Debian package `postgresql` "
            "(it creates that user)."
        ) from None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [], "umask": 0o077}


def check_installed() -> tuple[Path, str, dict[str, Any]]:
    """The server programs' folder, the server's user and how to run as it.

    Raises ``PostgresMissing`` with what to install when the server cannot run here.
    """
    bindir = find_bindir()
    if os.geteuid() == 0:
        return bindir, SERVER_USER_AS_ROOT, _as_user(SERVER_USER_AS_ROOT)
    return bindir, getpass.getuser(), {}


@contextlib.contextmanager
def running_server() -> Iterator[PgServer]:
    """Make, start and finally stop and remove a throwaway server (see the module doc)."""
    bindir, superuser, as_server_user = check_installed()
    # Not pytest's tmp_path: as root that sits in a folder only root may enter,
    # and the server's user must reach its own folder. The system temp folder
    # lets everyone through; this folder itself is private to the server's user.
    folder = Path(tempfile.mkdtemp(prefix="rrnet-pg-"))
    server = PgServer(
        bindir=bindir,
        folder=folder,
        port=free_port(),
        superuser=superuser,
        password=secrets.token_urlsafe(16),
        as_server_user=as_server_user,
    )
    try:
        _initdb(server)
        try:
            server.start()
            yield server
        finally:
            server.stop("fast")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _initdb(server: PgServer) -> None:
    """Create the cluster in ``server.datadir``, owned by the server's user."""
    owner = server.as_server_user
    pwfile = server.folder / "pwfile"
    pwfile.write_text(server.password + "\n", encoding="utf-8")
    pwfile.chmod(0o600)
    server.folder.chmod(0o700)
    if owner:
        for path in (server.folder, pwfile):
            os.chown(path, owner["user"], owner["group"])
    try:
        subprocess.run(
            [
                str(server.bindir / "initdb"),
                "-D",
                str(server.datadir),
                "-U",
                server.superuser,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=PG_CTL_TIMEOUT * 2,
            cwd=server.folder,
            env=_server_env(),
            **owner,
        )
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"initdb failed ({exc.returncode}): {exc.stderr.strip()}") from None
    finally:
        pwfile.unlink(missing_ok=True)
