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

import sqlite3
import warnings
import weakref
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from sqlalchemy.engine import Engine, make_url

from gcsearch.errors import InputError, RuntimeFailure

DEFAULT_STORAGE = "sqlite:///gcsearch.db"
DEFAULT_HEARTBEAT = 10  # seconds between a running trial's heartbeats
BUSY_TIMEOUT_S = 60.0
_IMMEDIATE: weakref.WeakSet[Engine] = weakref.WeakSet()  # SQLite engines whose transactions BEGIN IMMEDIATE


def mask_url(url: str) -> str:
    """The URL as it may be printed: any password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable storage URL>"


def parse_url(url: str) -> sqlalchemy.URL:
    """Check that `url` is a database URL SQLAlchemy can load a dialect for; InputError otherwise."""
    try:
        parsed = make_url(url)
    except Exception:
        raise InputError(
            f"--storage: {mask_url(url)!s} is not a database URL; expected e.g. sqlite:///gcsearch.db or "
            "postgresql+psycopg://user:password@host/dbname"
        ) from None
    try:
        parsed.get_dialect()
    except sqlalchemy.exc.NoSuchModuleError:
        raise InputError(f"--storage: unknown database kind {parsed.drivername!r} in {mask_url(url)} "
                         "(use sqlite, postgresql, mysql)") from None
    except ImportError as exc:
        raise InputError(f"--storage: the driver for {parsed.drivername!r} is not installed ({exc.name}); "
                         "for PostgreSQL: pip install 'gcsearch[postgres]'") from None
    return parsed


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
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return {"pool_pre_ping": True} if url.get_backend_name() != "sqlite" else {}
    return {"creator": _sqlite_creator(url.database)}


def open_storage(url: str = DEFAULT_STORAGE, heartbeat: int = DEFAULT_HEARTBEAT,
                 grace: int | None = None) -> optuna.storages.RDBStorage:
    """An RDBStorage for `url` with heartbeats. InputError for a bad URL, RuntimeFailure when unreachable."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        parent = Path(parsed.database).expanduser().resolve().parent
        if not parent.is_dir():
            raise InputError(f"--storage: the folder {str(parent)!r} for {mask_url(url)} does not exist")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            storage = optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs(parsed),
                heartbeat_interval=heartbeat,
                grace_period=grace if grace is not None else 4 * heartbeat,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
            )
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as exc:
            raise RuntimeFailure(f"--storage: cannot reach {mask_url(url)}: {_first_line(exc, parsed)}") from None
        except optuna.exceptions.StorageInternalError as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            raise RuntimeFailure(f"--storage: cannot use {mask_url(url)}: {_first_line(cause, parsed)}") from None
        except RuntimeError as exc:  # Optuna: a database made by another (newer) Optuna schema
            raise RuntimeFailure(f"--storage: cannot use {mask_url(url)}: {_first_line(exc, parsed)}") from None
    if parsed.get_backend_name() == "sqlite":
        # From now on, not during Optuna's set-up: that nests two connections in one thread, and with
        # BEGIN IMMEDIATE the inner one would wait for the outer one's lock.
        _IMMEDIATE.add(storage.engine)
    return storage


def _first_line(exc: BaseException, url: sqlalchemy.URL | None = None) -> str:
    """The first line of a driver's error, with the URL's password (should a driver echo it) masked."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    if url is not None and url.password:
        line = line.replace(str(url.password), "***")
    return line
