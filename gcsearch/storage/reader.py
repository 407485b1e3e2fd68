"""Read an Optuna RDB storage without writing to it and without holding locks that stall workers.

Optuna's own `study.get_trials()` builds a FrozenTrial per trial with one query per attribute table
and takes about 0.4 s per 1,000 trials with gcsearch's user attributes on SQLite, so a 10,000-trial
study would spend seconds before the report starts. This module reads Optuna's tables (studies,
study_directions, study_user_attributes, trials, trial_values, trial_user_attributes,
trial_system_attributes, trial_params) with a handful of plain SELECTs instead.

Read-only by construction:
- SQLite files are opened through `sqlite3` with a `file:...?mode=ro` URI, so the connection cannot
  write and a missing file is an error instead of a new, empty database. (For a WAL-mode database SQLite
  itself may add the -wal/-shm side files next to it, as any reader does; the database file is untouched.)
- Every SELECT runs on its own (no transaction is kept open), so a worker's commit waits at most for
  one statement. Trials are read before their values and attributes: a trial seen as COMPLETE had its
  values committed in the same transaction that set its state, so they are always found.
- Other URLs (PostgreSQL, MySQL) get a connection marked read-only where the driver allows it; the
  module issues no INSERT/UPDATE/DDL either way.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections import Counter
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from gcsearch.contract import STARTS_KIND, study_meta
from gcsearch.errors import InputError, RuntimeFailure
from gcsearch.storage.records import (
    CONSTRAINTS_KEY,
    STATES,
    StudyData,
    StudySummary,
    TrialRecord,
    constraints_from_system_attrs,
    loads,
    loads_cached,
    parse_datetime,
    stored_value,
)
from gcsearch.storage.urls import DEFAULT_STORAGE, StorageURL, first_line, resolve_storage


class StorageError(InputError):
    """The storage URL or the file it names cannot be read as an Optuna database."""


# -- connection ---------------------------------------------------------------------------------------
def connect(storage: str | StorageURL) -> sa.Engine:
    """A read-only engine for `storage` (as `resolve_storage` reads it); an error for a SQLite file that
    does not exist."""
    where = resolve_storage(storage)
    url = where.url
    if url.get_backend_name() == "sqlite":
        path = where.sqlite_path
        if path is None:
            raise StorageError(f"--storage: {where.shown} is an in-memory database; give the path of a SQLite file")
        if not path.is_file():
            what = "a directory, not a SQLite file" if path.is_dir() else "no such file"
            raise StorageError(f"--storage: {path}: {what}")
        resolved = str(path.resolve())

        def creator() -> sqlite3.Connection:
            return open_sqlite_readonly(resolved)

        engine = sa.create_engine("sqlite://", creator=creator, poolclass=NullPool)
    else:
        try:
            engine = sa.create_engine(url, poolclass=NullPool)
        except Exception as exc:  # noqa: BLE001 - a missing driver or a bad option, named in one line
            raise StorageError(f"--storage: cannot use {where.shown}: {exc}") from None
        if engine.dialect.name == "postgresql":
            engine = engine.execution_options(postgresql_readonly=True)
    return engine


def open_sqlite_readonly(path: str) -> sqlite3.Connection:
    """A connection that cannot write or create `path`.

    mode=ro: no writes, no new file. isolation_level=None keeps each SELECT in its own implicit transaction,
    so no read lock outlives a statement (in WAL mode readers never block the writer at all). A WAL database
    needs its -shm index; where that cannot be created (a read-only mount, a copy on read-only media) the
    file is opened as immutable instead, which is safe because nothing can write there either.
    """
    uri = f"file:{quote(path)}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError as exc:
        conn.close()
        if "unable to open" not in str(exc):
            raise
    return sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None, check_same_thread=False)


class Reader:
    """Runs the read-only queries against one storage. Use as a context manager."""

    def __init__(self, storage: str | StorageURL) -> None:
        where = resolve_storage(storage)
        self.engine = connect(where)
        self.storage = where.shown  # what messages and reports show: never the password
        self._checked = False

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.engine.dispose()

    def _rows(self, sql: str, **params: Any) -> list[sa.Row]:
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(sa.text(sql), params).fetchall()
                conn.rollback()
                return rows
        except sa.exc.DatabaseError as exc:
            self._raise(exc)

    def _raise(self, exc: sa.exc.DatabaseError) -> None:
        message = first_line(exc)
        where = self.storage
        if "no such table" in message or "does not exist" in message and "relation" in message:
            raise StorageError(f"--storage: {where} is not an Optuna database ({message})") from None
        if "file is not a database" in message:
            raise StorageError(f"--storage: {where} is not a SQLite database") from None
        if "malformed" in message:  # a damaged file is bad input, as for `run`: exit 2, the file left as it is
            raise StorageError(f"--storage: {where} is damaged ({message})") from None
        if isinstance(exc, sa.exc.OperationalError) and "unable to open" in message:
            raise StorageError(f"--storage: {where}: {message}") from None
        raise RuntimeFailure(f"--storage: cannot read {where}: {message}") from None

    # -- studies ---------------------------------------------------------------------------------------
    def studies(self) -> list[StudySummary]:
        """Every study in the storage with its trial counts, in creation order."""
        names = self._rows("SELECT study_id, study_name FROM studies ORDER BY study_id")
        directions: dict[int, list[tuple[int, str]]] = {}
        for sid, objective, direction in self._rows("SELECT study_id, objective, direction FROM study_directions"):
            directions.setdefault(sid, []).append((objective, str(direction).upper()))
        counts: dict[int, Counter] = {}
        last: dict[int, dt.datetime] = {}
        for sid, state, n, start, complete in self._rows(
            "SELECT study_id, state, COUNT(*), MAX(datetime_start), MAX(datetime_complete) "
            "FROM trials GROUP BY study_id, state"
        ):
            counts.setdefault(sid, Counter())[str(state)] += n
            for stamp in (parse_datetime(start), parse_datetime(complete)):
                if stamp is not None and (sid not in last or stamp > last[sid]):
                    last[sid] = stamp
        attrs: dict[int, dict[str, Any]] = {}
        for sid, key, value in self._rows("SELECT study_id, key, value_json FROM study_user_attributes"):
            attrs.setdefault(sid, {})[key] = loads(value)
        out = []
        for sid, name in names:
            state_counts = {s: counts.get(sid, Counter()).get(s, 0) for s in STATES}
            out.append(StudySummary(
                name=name, study_id=sid, directions=[d for _, d in sorted(directions.get(sid, []))],
                counts=state_counts, last_update=last.get(sid), user_attrs=attrs.get(sid, {}),
            ))
        return out

    def study(self, name: str | None) -> StudySummary:
        """The study called `name`; with no name, the storage's only study."""
        studies = self.studies()
        names = ", ".join(s.name for s in studies)
        if name is None:
            # The paired design's starts are a study of their own, never the one a reader means.
            own = [s for s in studies if study_meta(s.user_attrs).get("kind") != STARTS_KIND]
            if len(own) == 1:
                return own[0]
            if not own:
                raise InputError(f"study: {self.storage} holds no study yet")
            raise InputError(f"study: {self.storage} holds {len(own)} studies; pick one with --study "
                             f"({', '.join(s.name for s in own)})")
        for summary in studies:
            if summary.name == name:
                return summary
        known = f"studies: {names}" if studies else "it holds no study"
        raise InputError(f"study: no study named {name!r} in {self.storage} ({known})")

    # -- trials ----------------------------------------------------------------------------------------
    def trials(self, summary: StudySummary, user_keys: Iterable[str] | None = None,
               numbers: Iterable[int] | None = None, full: bool = False) -> list[TrialRecord]:
        """The study's trials in number order.

        `user_keys` limits which user attributes are read (all when None); `numbers` limits the trials;
        `full` also reads every system attribute, the parameters and the intermediate values.
        """
        sid = summary.study_id
        where, params = "t.study_id = :sid", {"sid": sid}
        if numbers is not None:
            wanted = sorted({int(n) for n in numbers})
            if not wanted:
                return []
            where += f" AND t.number IN ({', '.join(str(n) for n in wanted)})"
        base = self._rows(
            f"SELECT t.trial_id, t.number, t.state, t.datetime_start, t.datetime_complete FROM trials t "
            f"WHERE {where} ORDER BY t.number", **params)
        records: dict[int, TrialRecord] = {}
        for trial_id, number, state, start, complete in base:
            records[trial_id] = TrialRecord(
                number=number, trial_id=trial_id, state=str(state), values=None, user_attrs={}, constraints={},
                datetime_start=parse_datetime(start), datetime_complete=parse_datetime(complete))
        if not records:
            return []
        join = f"JOIN trials t ON t.trial_id = a.trial_id WHERE {where}"

        values: dict[int, dict[int, float]] = {}
        for trial_id, objective, value, value_type in self._rows(
                f"SELECT a.trial_id, a.objective, a.value, a.value_type FROM trial_values a {join}", **params):
            values.setdefault(trial_id, {})[objective] = stored_value(value, value_type)
        for trial_id, by_objective in values.items():
            if trial_id in records:
                records[trial_id].values = [by_objective[k] for k in sorted(by_objective)]

        key_filter = ""
        if user_keys is not None:
            keys = sorted(set(user_keys))
            key_filter = " AND a.key IN (" + ", ".join(f":k{i}" for i in range(len(keys))) + ")"
            params = {**params, **{f"k{i}": k for i, k in enumerate(keys)}}
        cache: dict[str, Any] = {}
        for trial_id, key, value in self._rows(
                f"SELECT a.trial_id, a.key, a.value_json FROM trial_user_attributes a {join}{key_filter}", **params):
            record = records.get(trial_id)
            if record is not None:
                record.user_attrs[key] = loads_cached(value, cache)

        system_filter = "" if full else f" AND a.key LIKE '{CONSTRAINTS_KEY}%'"
        for trial_id, key, value in self._rows(
                f"SELECT a.trial_id, a.key, a.value_json FROM trial_system_attributes a {join}{system_filter}",
                **{"sid": sid}):
            record = records.get(trial_id)
            if record is not None:
                record.system_attrs[key] = loads(value)
        for record in records.values():
            record.constraints = constraints_from_system_attrs(record.system_attrs)
        if full:
            self._read_params(records, join, sid)
        return sorted(records.values(), key=lambda r: r.number)

    def _read_params(self, records: dict[int, TrialRecord], join: str, sid: int) -> None:
        from optuna.distributions import json_to_distribution  # decoding a stored parameter is Optuna's job

        for trial_id, name, value, distribution in self._rows(
                f"SELECT a.trial_id, a.param_name, a.param_value, a.distribution_json FROM trial_params a {join}",
                sid=sid):
            record = records.get(trial_id)
            if record is not None:
                try:
                    record.params[name] = json_to_distribution(distribution).to_external_repr(value)
                except Exception:  # noqa: BLE001 - an unknown distribution still shows its stored number
                    record.params[name] = value
        for trial_id, step, value, value_type in self._rows(
                f"SELECT a.trial_id, a.step, a.intermediate_value, a.intermediate_value_type "
                f"FROM trial_intermediate_values a {join}", sid=sid):
            record = records.get(trial_id)
            if record is not None:
                record.intermediate_values[int(step)] = stored_value(value, value_type)


def read_study(storage: str = DEFAULT_STORAGE, study: str | None = None,
               user_keys: Iterable[str] | None = None) -> StudyData:
    """Read a study and its trials (all user attributes, or only `user_keys`)."""
    with Reader(storage) as reader:
        summary = reader.study(study)
        trials = reader.trials(summary, user_keys=user_keys)
        return StudyData(summary=summary, trials=trials, storage=reader.storage)


def list_studies(storage: str = DEFAULT_STORAGE) -> list[StudySummary]:
    """Every study in the storage, with counts by state."""
    with Reader(storage) as reader:
        return reader.studies()


def read_trial(storage: str, study: str | None, number: int) -> tuple[StudySummary, TrialRecord]:
    """One trial in full: every attribute, parameter and intermediate value."""
    with Reader(storage) as reader:
        summary = reader.study(study)
        found = reader.trials(summary, numbers=[number], full=True)
        if not found:
            n = summary.n_trials
            span = f"trials 0..{n - 1}" if n else "no trials yet"
            raise InputError(f"trial: study {summary.name!r} has no trial {number} ({span})")
        return summary, found[0]
