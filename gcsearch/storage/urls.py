"""The one door to a storage: what `--storage` names, read under one rule by the writer, the reader and the
artifact store alike. Also what may be printed of a URL, and a driver's error in one line.

The rule: a text with `://` is a SQLAlchemy URL; anything else is the path of a SQLite file. An error shows
what was typed, its password masked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy
from sqlalchemy.engine import make_url

from gcsearch.errors import InputError

DEFAULT_STORAGE = "sqlite:///gcsearch.db"
EXAMPLES = "e.g. gcsearch.db, sqlite:///gcsearch.db or postgresql+psycopg://user:password@host/dbname"
# user:password@ in a text that may not parse as a URL: the password is whatever lies between : and the last @.
_PASSWORD = re.compile(r"(://[^:/@]*:)[^/]*@")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # two letters at least: C:\\x.db is a Windows path


@dataclass(frozen=True)
class StorageURL:
    """A storage as `resolve_storage` read it: what was typed and the URL it names."""

    typed: str
    url: sqlalchemy.URL

    @property
    def text(self) -> str:
        """The full URL, password included: for opening, never for printing."""
        return self.url.render_as_string(hide_password=False)

    @property
    def shown(self) -> str:
        """The URL as it may be printed: any password replaced by ***."""
        return self.url.render_as_string(hide_password=True)

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file the URL names; None for in-memory SQLite and for other databases."""
        database = sqlite_file(self.url)
        return Path(database).expanduser() if database is not None else None

    def __str__(self) -> str:
        return self.shown


def resolve_storage(storage: str | StorageURL) -> StorageURL:
    """Read `storage` as a database URL or the path of a SQLite file; InputError naming what was typed."""
    if isinstance(storage, StorageURL):
        return storage
    typed = storage.strip()
    if not typed:
        raise InputError(f"--storage: empty, so it is not a database URL ({EXAMPLES})")
    not_url = InputError(f"--storage: {mask_text(typed)!r} is not a database URL ({EXAMPLES})")
    if "://" not in typed and _SCHEME.match(typed):
        raise not_url  # "sqlite:/x.db", "postgresql:host/db": a URL mistyped, not a file name
    text = typed if "://" in typed else "sqlite:///" + str(Path(typed).expanduser())
    try:
        url = make_url(text)
    except Exception:  # noqa: BLE001 - SQLAlchemy raises ArgumentError or ValueError for malformed URLs
        raise not_url from None
    try:
        url.get_dialect().import_dbapi()  # the driver module too: Optuna would fail on it with a traceback
    except sqlalchemy.exc.NoSuchModuleError:
        raise InputError(f"--storage: unknown database kind {url.drivername!r} in {mask_text(typed)!r} "
                         "(use sqlite, postgresql, mysql)") from None
    except ImportError as exc:
        raise InputError(f"--storage: the driver for {url.drivername!r} is not installed ({exc.name}); "
                         "for PostgreSQL use postgresql+psycopg://... with pip install 'gcsearch[postgres]'") from None
    return StorageURL(typed=typed, url=url)


def mask_text(text: str) -> str:
    """`text` with the password of a `scheme://user:password@host` part replaced by ***, parsable or not."""
    return _PASSWORD.sub(r"\1***@", text)


def mask_url(storage: str | StorageURL) -> str:
    """The storage as it may be printed: the URL it names with any password replaced by ***."""
    try:
        return resolve_storage(storage).shown
    except InputError:
        return mask_text(str(storage).strip())


def sqlite_file(url: sqlalchemy.URL) -> str | None:
    """The database file a SQLite URL names; None for in-memory SQLite and for other databases."""
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:" \
            or database.startswith("file::memory:"):
        return None
    return database


def first_line(exc: BaseException, url: sqlalchemy.URL | None = None) -> str:
    """The first line of a driver's error, with the URL's password (should a driver echo it) masked."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    if url is not None and url.password:
        line = line.replace(str(url.password), "***")
    return line
