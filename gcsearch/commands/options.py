"""The options several commands share, each declared once as a typed alias (`StorageOpt`, `StudyOpt`, ...).

A value is resolved where it is parsed: `--storage` arrives in a command as a `StorageURL` (one rule for every
command: a URL or the path of a SQLite file), a reading command's `--study` as the stored study's name (a study
file given there is read for its name). Bad input raises InputError here, before any work starts.
"""

from __future__ import annotations

from typing import Annotated

import typer

from gcsearch.storage.urls import StorageURL, resolve_storage
from gcsearch.study.parse import builtin_studies, stored_study_name

_STORAGE_HELP = "a database URL (sqlite:///gcsearch.db, postgresql+psycopg://user:password@host/db) or the path " \
                "of a SQLite file (gcsearch.db)."


def _storage(value: str | StorageURL) -> StorageURL:
    return resolve_storage(value)


# Commands that write a study (run, check): a new SQLite file is created.
StorageOpt = Annotated[StorageURL, typer.Option(
    "--storage", metavar="URL", envvar="GCSEARCH_STORAGE", parser=str, callback=_storage,
    help=f"Where trials are kept: {_STORAGE_HELP} Workers on several machines share one PostgreSQL URL.")]
# Commands that only read (report, studies, show, analyze, export): a missing file is an error.
ReadStorageOpt = Annotated[StorageURL, typer.Option(
    "--storage", metavar="URL", envvar="GCSEARCH_STORAGE", parser=str, callback=_storage,
    help=f"Where the trials live: {_STORAGE_HELP} Opened read-only; a missing file is an error, never a new "
         "database.")]

# A study to run: a built-in one or a study file.
StudyFileOpt = Annotated[str, typer.Option(
    "--study", "-s", metavar="NAME|PATH",
    help=f"A built-in study ({', '.join(builtin_studies())}) or the path to a study file (.toml).")]
# A stored study to read: its name, or the study file it was run from.
StudyOpt = Annotated[str | None, typer.Option(
    "--study", "-s", metavar="NAME|PATH", callback=stored_study_name,
    help="The study's name, or the study file it was run from; may be left out when the storage holds one "
         "study.")]

TrialArg = Annotated[int, typer.Argument(metavar="TRIAL", help="Trial number, as in the report's trials column.")]
# Where a run keeps trained weights, or where they were kept (analyze, export).
ArtifactsOpt = Annotated[str | None, typer.Option(
    "--artifacts", envvar="GCSEARCH_ARTIFACTS", metavar="DIR",
    help="Folder of the trained weights (Optuna's artifact store; analyze and export read them). run: default "
         "<database>.artifacts beside a SQLite file, not kept for other storages unless given, 'none' keeps none. "
         "analyze, export: the folder, when it moved since the run.")]

# Output: one JSON object on stdout instead of the table (progress, if any, goes to stderr).
JsonOpt = Annotated[bool, typer.Option(
    "--json", help="Print JSON on stdout instead of the table (progress goes to stderr).")]

# The commands that train (run, check).
DeviceOpt = Annotated[str, typer.Option(
    "--device", metavar="DEVICE", help="auto (cuda when present, else cpu), cpu, cuda, cuda:1, ...")]
DataDirOpt = Annotated[str | None, typer.Option(
    "--data-dir", envvar="GCSEARCH_DATA_DIR", metavar="DIR",
    help="Where the dataset's files are (CIFAR's extracted batches, an image folder).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Plain log lines instead of the live view.")]
