"""Storage URLs, shared by the writer and the reader: the default, what may be printed of one, the SQLite file
one names, and a driver's error in one line."""

from __future__ import annotations

import sqlalchemy
from sqlalchemy.engine import make_url

DEFAULT_STORAGE = "sqlite:///gcsearch.db"


def mask_url(url: str) -> str:
    """The URL as it may be printed: any password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - SQLAlchemy raises ArgumentError or ValueError for malformed URLs
        return "<unparsable storage URL>"


def sqlite_file(url: sqlalchemy.URL) -> str | None:
    """The database file a SQLite URL names; None for in-memory SQLite and for other databases."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return url.database


def first_line(exc: BaseException, url: sqlalchemy.URL | None = None) -> str:
    """The first line of a driver's error, with the URL's password (should a driver echo it) masked."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    if url is not None and url.password:
        line = line.replace(str(url.password), "***")
    return line
