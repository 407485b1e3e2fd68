"""`gcsearch export`: a trial's trained model as one file (weights and spec), for the user's own code."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gcsearch.commands import StorageOption, StudyOption, console
from gcsearch.errors import InputError
from gcsearch.storage.artifacts import trial_weights
from gcsearch.storage.reader import read_trial
from gcsearch.storage.records import StudySummary, TrialRecord
from gcsearch.storage.urls import DEFAULT_STORAGE
from gcsearch.units import si

if TYPE_CHECKING:
    from gcsearch.model.weights import Weights

TrialArgument = Annotated[int, typer.Argument(metavar="TRIAL", help="Trial number, as in the report's trials column.")]
ArtifactsOption = Annotated[str | None, typer.Option(
    "--artifacts", envvar="GCSEARCH_ARTIFACTS", metavar="DIR",
    help="The folder the weights were kept in, when it moved since the run (default: the one the trial "
         "recorded).")]


def export(
    trial: TrialArgument,
    output: Annotated[Path, typer.Option("--output", "-o", metavar="FILE", help="The file to write (model.pt).")],
    study: StudyOption = None,
    storage: StorageOption = DEFAULT_STORAGE,
    artifacts: ArtifactsOption = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite FILE when it exists.")] = False,
) -> None:
    """A trial's trained model in one file: its weights, its spec and a checksum.

    Load it in your own code with `gcsearch.load_model(FILE)`: the model of the trial's spec (any backbone of
    the space) with the trained weights, ready to train further. Read-only on the database.

    [bold]Examples[/]

      gcsearch export 12 -s block -o model.pt
      python -c "import gcsearch; print(gcsearch.load_model('model.pt'))"
    """
    if output.exists() and not force:
        raise InputError(f"--output: {output} exists (add --force to overwrite it)")
    _summary, record, content, weights = read_trial_weights(storage, study, trial, artifacts)
    try:
        output.write_bytes(content)
    except OSError as exc:
        raise InputError(f"--output: cannot write {output} ({exc.strerror or exc})") from None
    params = sum(t.numel() for t in weights.state_dict.values())
    console.print(f"trial {record.number} ({weights.spec.label()}): weights and spec written to {output} "
                  f"({len(content) / 1e6:.2f} MB, {si(params)} values); load it with "
                  f"gcsearch.load_model({str(output)!r})", highlight=False, soft_wrap=True)


def read_trial_weights(storage: str, study: str | None, number: int, artifacts: str | None
                       ) -> tuple[StudySummary, TrialRecord, bytes, Weights]:
    """A trial's record, its weights file's bytes and the checked `Weights` they hold."""
    from gcsearch.model.weights import read_weights

    summary, record = read_trial(storage, study, number)
    content, where = trial_weights(record.user_attrs, number, artifacts)
    return summary, record, content, read_weights(content, name=f"trial {number}: {where}")
