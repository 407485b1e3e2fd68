"""Where a study keeps its trained weights, and a trial's weights stored there and read back.

The weights go through Optuna's artifact store (`FileSystemArtifactStore`), so the database records them as
Optuna records any artifact (a trial system attribute `artifacts:<id>`): `optuna.artifacts.
get_all_artifact_meta` lists them and Optuna's dashboard shows them. gcsearch also writes the trial user
attribute `Attr.WEIGHTS` ({artifact_id, store, sha256, bytes}), so a reader finds the file with the one
SELECT it already makes and checks it before unpickling anything.

The store is a folder: by default `<database>.artifacts/` beside a SQLite file (`gcsearch.db` ->
`gcsearch.artifacts/`). A server database has no "beside", so there the user names a folder (`--artifacts`,
`GCSEARCH_ARTIFACTS`, which may be a shared mount) or the weights are not kept. Reading a trial's weights is
a file read: the database is not touched.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from gcsearch.contract import Attr
from gcsearch.errors import InputError
from gcsearch.storage.reader import read_trial
from gcsearch.storage.records import StudySummary, TrialRecord
from gcsearch.storage.urls import StorageURL, resolve_storage

if TYPE_CHECKING:
    from gcsearch.model.weights import Weights

OFF = ("none", "off")


def default_location(storage: str | StorageURL) -> Path | None:
    """`<database>.artifacts` beside a SQLite file; None for any other storage."""
    path = resolve_storage(storage).sqlite_path
    if path is None or str(path).startswith("file:"):
        return None
    return path.with_name(path.stem + ".artifacts")


def artifact_location(storage: str | StorageURL, given: str | None) -> Path | None:
    """The folder a run keeps weights in: `given` (a path or file:// URL; "none" turns keeping off), else
    the default beside a SQLite file, else None (not kept)."""
    if given is None or not given.strip():
        return default_location(storage)
    text = given.strip()
    if text.lower() in OFF:
        return None
    if text.startswith("file://"):
        text = text[len("file://"):]
    elif "://" in text:
        raise InputError(f"--artifacts: {given!r}: give a folder (a path or a file:// URL); other stores "
                         "(S3, GCS) are not supported")
    return Path(text).expanduser()


def check_location(location: Path) -> None:
    """Refuse a folder that cannot be made, before a run trains anything; nothing is created here (a run that
    is refused later must leave no empty folder behind): `keep_weights` makes it with the first weights."""
    existing = location.expanduser().absolute()
    if existing.is_dir():
        return  # whether it can be written shows with the first weights, as for the database beside it
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        why = "not a folder" if not existing.is_dir() else "read-only"
        raise InputError(f"--artifacts: cannot create the folder {location} ({existing} is {why})")


def open_store(location: Path) -> optuna.artifacts.FileSystemArtifactStore:
    """The artifact store in `location`, created if missing; an InputError when it cannot be."""
    try:
        location.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--artifacts: cannot create the folder {location} ({exc.strerror or exc})") from None
    return optuna.artifacts.FileSystemArtifactStore(location)


def keep_weights(location: Path, trial: optuna.Trial, content: bytes) -> dict[str, Any]:
    """Upload a trial's weights file to the store and return what `Attr.WEIGHTS` records of it."""
    store = open_store(location)
    with tempfile.TemporaryDirectory(prefix="gcsearch-weights-") as folder:
        path = Path(folder) / f"trial-{trial.number}.pt"
        path.write_bytes(content)
        artifact_id = optuna.artifacts.upload_artifact(artifact_store=store, file_path=str(path),
                                                       study_or_trial=trial, mimetype="application/octet-stream")
    return {"artifact_id": artifact_id, "store": str(location.resolve()),
            "sha256": hashlib.sha256(content).hexdigest(), "bytes": len(content)}


def trial_weights(user_attrs: dict[str, Any], number: int, location: str | None = None) -> tuple[bytes, str]:
    """A trial's weights file (its bytes, checked against the stored SHA-256) and where it was read.

    `location`: the store folder, when it moved since the run (default: the one the trial recorded).
    """
    kept = user_attrs.get(Attr.WEIGHTS)
    if not isinstance(kept, dict) or not isinstance(kept.get("artifact_id"), str):
        raise InputError(f"trial {number} kept no weights (it did not complete, or ran with --artifacts none, "
                         "or before gcsearch kept weights)")
    folder = Path(location).expanduser() if location else Path(str(kept.get("store", "")))
    store = optuna.artifacts.FileSystemArtifactStore(folder)
    where = folder / kept["artifact_id"]
    try:
        with store.open_reader(kept["artifact_id"]) as reader:
            content = reader.read()
    except (optuna.artifacts.exceptions.ArtifactNotFound, FileNotFoundError):
        raise InputError(f"trial {number}: its weights file {where} is missing (moved? give the folder with "
                         "--artifacts)") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"trial {number}: cannot read its weights file {where} ({exc})") from None
    if kept.get("sha256") and hashlib.sha256(content).hexdigest() != kept["sha256"]:
        raise InputError(f"trial {number}: its weights file {where} is corrupt (checksum mismatch)")
    return content, str(where)


def read_trial_weights(storage: str | StorageURL, study: str | None, number: int, artifacts: str | None
                       ) -> tuple[StudySummary, TrialRecord, bytes, Weights]:
    """A trial's record, its weights file's bytes and the checked `Weights` they hold (analyze, export)."""
    from gcsearch.model.weights import read_weights  # torch loads here, once the trial is known to exist

    summary, record = read_trial(storage, study, number)
    content, where = trial_weights(record.user_attrs, number, artifacts)
    return summary, record, content, read_weights(content, name=f"trial {number}: {where}")
