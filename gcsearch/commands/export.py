"""`gcsearch export`: a trial's trained model as one file (weights and spec), for the user's own code."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gcsearch.commands import console
from gcsearch.commands.options import ArtifactsOpt, ReadStorageOpt, StudyOpt, TrialArg
from gcsearch.errors import InputError
from gcsearch.storage.artifacts import read_trial_weights
from gcsearch.storage.urls import DEFAULT_STORAGE
from gcsearch.units import si

if TYPE_CHECKING:
    pass



def export(
    trial: TrialArg,
    output: Annotated[Path, typer.Option("--output", "-o", metavar="FILE", help="The file to write (model.pt).")],
    study: StudyOpt = None,
    storage: ReadStorageOpt = DEFAULT_STORAGE,
    artifacts: ArtifactsOpt = None,
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
