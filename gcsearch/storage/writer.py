"""Open an Optuna RDB storage from a URL: SQLite made safe for several workers, heartbeats, clear errors.

SQLite: WAL mode (readers never wait for the writer), a 60 s busy timeout, and every transaction opened
with BEGIN IMMEDIATE. The last point matters: Optuna reads a row and then writes it in one transaction
(a trial's state goes WAITING -> RUNNING only if it is still WAITING). With SQLite's default deferred
transactions two workers can both read, and the second writer then fails at once with "database is
locked" (a stale WAL snapshot cannot be upgraded, so the busy timeout does not help). BEGIN IMMEDIATE
takes the write lock up front, so workers queue for at most one short transaction instead.

Every storage gets heartbeats: a running trial writes one every `heartbeat` seconds, and a trial silent for
`grace` seconds belongs to a dead worker; the next worker that looks marks it FAIL and queues a copy of it
(Optuna's RetryHeartbeatStaleTrialCallback), so a SIGKILL loses nothing but the killed trial's time.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import warnings
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import optuna
import sqlalchemy
from sqlalchemy.engine import Engine

from gcsearch.errors import InputError, RuntimeFailure
from gcsearch.storage.urls import DEFAULT_STORAGE, StorageURL, first_line, resolve_storage, sqlite_file

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock, SQLite files are not locked by `exclusive`
    fcntl = None

DEFAULT_HEARTBEAT = 10  # seconds between a running trial's heartbeats
BUSY_TIMEOUT_S = 60.0
_IMMEDIATE: weakref.WeakSet[Engine] = weakref.WeakSet()  # SQLite engines whose transactions BEGIN IMMEDIATE


def _sqlite_creator(path: str):
    def connect() -> sqlite3.Connection:
        # isolation_level=None: the sqlite3 module issues no BEGIN of its own; _begin_immediate does.
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across crashes of the process
        return conn

    return connect


@sqlalchemy.event.listens_for(Engine, "begin")
def _begin_immediate(conn: sqlalchemy.Connection) -> None:
    if conn.engine in _IMMEDIATE:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def engine_kwargs(url: sqlalchemy.URL) -> dict[str, Any]:
    """SQLAlchemy engine options for `url`: SQLite gets WAL, a busy timeout and BEGIN IMMEDIATE."""
    path = sqlite_file(url)
    if path is None:
        return {"pool_pre_ping": True} if url.get_backend_name() != "sqlite" else {}
    return {"creator": _sqlite_creator(path)}


def open_storage(url: str | StorageURL = DEFAULT_STORAGE, heartbeat: int = DEFAULT_HEARTBEAT,
                 grace: int | None = None) -> optuna.storages.RDBStorage:
    """An RDBStorage for `url` (a URL or a SQLite file's path, as `resolve_storage` reads it) with heartbeats.
    InputError for a bad URL, RuntimeFailure when unreachable."""
    where = resolve_storage(url)
    parsed, shown = where.url, where.shown
    path = where.sqlite_path
    if path is not None:
        path = path.resolve()
        if not path.parent.is_dir():
            raise InputError(f"--storage: the folder {str(path.parent)!r} for {shown} does not exist")
        check_sqlite_file(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            storage = optuna.storages.RDBStorage(
                where.text,
                engine_kwargs=engine_kwargs(parsed),
                heartbeat_interval=heartbeat,
                grace_period=grace if grace is not None else 4 * heartbeat,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
            )
        except (sqlalchemy.exc.DatabaseError, sqlalchemy.exc.InterfaceError) as exc:
            if "malformed" in first_line(exc, parsed):
                raise InputError(f"--storage: {shown} is damaged ({first_line(exc, parsed)}); it is left as it "
                                 "is") from None
            if path is not None:
                raise RuntimeFailure(f"--storage: cannot open {shown}: {first_line(exc, parsed)}"
                                     f"{_sqlite_hint(path)}") from None
            raise RuntimeFailure(f"--storage: cannot reach {shown}: {first_line(exc, parsed)}") from None
        except optuna.exceptions.StorageInternalError as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            raise RuntimeFailure(f"--storage: cannot use {shown}: {first_line(cause, parsed)}") from None
        except RuntimeError as exc:  # Optuna: a database made by another (newer) Optuna schema
            raise RuntimeFailure(f"--storage: cannot use {shown}: {first_line(exc, parsed)}") from None
    if parsed.get_backend_name() == "sqlite":
        # From now on, not during Optuna's set-up: that nests two connections in one thread, and with
        # BEGIN IMMEDIATE the inner one would wait for the outer one's lock.
        _IMMEDIATE.add(storage.engine)
    return storage


@contextlib.contextmanager
def exclusive(storage: optuna.storages.BaseStorage, name: str) -> Iterator[None]:
    """Hold the lock `name` against every process, on any machine, that shares `storage`, while the body runs.

    PostgreSQL: a session advisory lock on a connection of its own (the server drops it if the process
    dies). A SQLite file: flock on the file itself, which SQLite's own byte-range locks do not see. Other
    storages (MySQL, in-memory): no lock. Optuna's calls in the body use their own connections.
    """
    engine: Engine | None = getattr(storage, "engine", None)
    backend = engine.url.get_backend_name() if engine is not None else ""
    if backend == "postgresql":
        key = int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big", signed=True)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                conn.commit()
        return
    database = sqlite_file(engine.url) if engine is not None else None
    if database is not None and fcntl is not None:
        with open(database, "rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    yield


def check_sqlite_file(path: Path) -> None:
    """Refuse an existing file that is not an Optuna SQLite database, before anything writes to it.

    Opening it through Optuna would create Optuna's tables in someone else's database (or, for a file that
    is not a database at all, fail with a traceback). Read-only here: mode=ro cannot change the file.
    """
    if not path.is_file() or path.stat().st_size == 0:
        return  # a new database, or an empty file SQLite treats as one
    # Reading a WAL-mode file creates its -wal and -shm files; a file refused here must be left as it was.
    sides = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
    new_sides = [side for side in sides if not side.exists()]
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc) or "malformed" in str(exc):
            _remove(new_sides)
            raise InputError(f"--storage: {path} is not a SQLite database ({exc}); it is left as it is") from None
        return  # cannot look (e.g. a WAL file on a read-only folder): opening it says why
    if tables and not {"studies", "version_info"} <= tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        _remove(new_sides)
        raise InputError(f"--storage: {path} is a SQLite database but not an Optuna one (its tables: {shown}); "
                         "gcsearch will not add tables to it: give a new file") from None


def _remove(sides: list[Path]) -> None:
    """Remove the -wal and -shm files that reading a refused file created (an empty WAL: nothing was written)."""
    for side in sides:
        with contextlib.suppress(OSError):
            if side.exists() and (side.name.endswith("-shm") or side.stat().st_size == 0):
                side.unlink()


def _sqlite_hint(path: Path) -> str:
    """Why SQLite may have failed to open or write `path`: a read-only folder, a full disk."""
    try:
        if not os.access(path.parent, os.W_OK):
            return f" (the folder {path.parent} is read-only; SQLite writes the file and its -wal and -shm files there)"
        if shutil.disk_usage(path.parent).free < 1 << 20:
            return f" (no space left on the device of {path.parent})"
    except OSError:
        pass
    return ""


# What a storage call raises when the database fails under it (Optuna wraps most SQLAlchemy errors).
STORAGE_ERRORS = (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError)


def storage_failure(exc: BaseException, url: str | StorageURL, doing: str = "use") -> InputError | RuntimeFailure:
    """A RuntimeFailure for a storage call that failed: `--storage: cannot <doing> <url>: <reason>`, the
    password masked, and for a SQLite file whether its folder is read-only or its disk full. A damaged SQLite
    file is bad input (InputError, exit 2), as for the commands that only read it."""
    where = resolve_storage(url)
    if "malformed" in describe_error(exc, where):
        return InputError(f"--storage: {where.shown} is damaged ({describe_error(exc, where)}); it is left as it is")
    hint = _sqlite_hint(where.sqlite_path.resolve()) if where.sqlite_path is not None else ""
    return RuntimeFailure(f"--storage: cannot {doing} {where.shown}: {describe_error(exc, where)}{hint}")


def describe_error(exc: BaseException, url: str | StorageURL | None = None) -> str:
    """One line for a storage failure: the driver's own message (Optuna's StorageInternalError hides it
    behind "An exception is raised during the commit"), the URL's password masked."""
    inner: BaseException = exc
    while isinstance(inner, optuna.exceptions.StorageInternalError) and inner.__cause__ is not None:
        inner = inner.__cause__
    parsed = None
    if url is not None:
        try:
            parsed = resolve_storage(url).url
        except InputError:
            parsed = None
    return first_line(inner, parsed)
