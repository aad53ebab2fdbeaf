"""A throwaway PostgreSQL cluster for the test run: initdb in a temp folder, postgres on a loopback port.

Debian's `postgresql` package puts the server in /usr/lib/postgresql/<major>/bin (not on PATH). initdb
refuses to run as root, so as root the cluster belongs to an unprivileged user (`nobody`), in a folder that
user can reach (pytest's own temp folders are 0700 root: not reachable). The cluster listens on 127.0.0.1
and a unix socket in its folder only, trusts local connections (a test cluster, gone at the end of the run),
and runs with fsync off: a crash of the test machine loses nothing worth keeping.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

SUPERUSER = "erpsync"


def server_bin_dir() -> Path | None:
    """The newest PostgreSQL server binaries: $PGTEST_BIN, Debian's layout, or `initdb` on PATH."""
    if os.environ.get("PGTEST_BIN"):
        return Path(os.environ["PGTEST_BIN"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


# Not ERPSYNC_*: the autouse `isolated_dirs` fixture clears those before the (lazy) session fixture starts.
def free_port() -> int:
    """$PGTEST_PORT if set (a developer's own port range), else a port the kernel says is free."""
    if os.environ.get("PGTEST_PORT"):
        return int(os.environ["PGTEST_PORT"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unprivileged_user() -> str:
    """`nobody`, or a system user made for the purpose where a minimal image has none."""
    for name in ("nobody", "erpsync-pgtest"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "erpsync-pgtest"],
                   check=True)
    return "erpsync-pgtest"


class PgCluster:
    def __init__(self) -> None:
        bin_dir = server_bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install -y postgresql, "
                               "or set PGTEST_BIN); `.ci/run` installs them")
        self.bin = bin_dir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="erpsync-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = _unprivileged_user()
            os.chmod(self.root, 0o755)
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, check=True, capture_output=True, text=True, cwd=self.root, **kwargs)  # type: ignore[call-overload]

    def start(self, *, durable: bool = False) -> PgCluster:
        """initdb and start; `durable` keeps PostgreSQL's default fsync and synchronous_commit (benchmarks)."""
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-A", "trust",
                  "-E", "UTF8", "--no-sync", "--locale=C")
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
                   "-c max_connections=300 -c shared_buffers=32MB")
        if not durable:  # tests: nothing here outlives the run
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                      str(self.root / "server.log"), "-w", "-t", "60", "start")
        except subprocess.CalledProcessError as exc:
            log = (self.root / "server.log").read_text(errors="replace") if (self.root / "server.log").exists() \
                else ""
            raise RuntimeError(f"PostgreSQL test cluster did not start: {exc.stderr}\n{log}") from None
        return self

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh empty database (one per test), its SQLAlchemy URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres",
                             autocommit=True) as conn:
            for attempt in range(20):
                try:
                    conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
                    break
                except psycopg.errors.ObjectInUse:  # two CREATE DATABASE at once from template0 (xdist, bench)
                    time.sleep(0.05 * (attempt + 1))
        return self.url(name)
