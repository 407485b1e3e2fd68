"""`gcsearch studies`: the studies in a storage, with trial counts by state (read-only)."""

from __future__ import annotations

import json

from rich import box
from rich.table import Table

from gcsearch.commands import console, wide
from gcsearch.commands.options import JsonOpt, ReadStorageOpt
from gcsearch.commands.view import local_time
from gcsearch.storage.reader import list_studies
from gcsearch.storage.records import summary_dict
from gcsearch.storage.urls import DEFAULT_STORAGE, mask_url


def studies(
    storage: ReadStorageOpt = DEFAULT_STORAGE,
    as_json: JsonOpt = False,
) -> None:
    """The studies in a storage: trial counts by state, dataset, last update.

    Read-only, like `report`: safe while workers run.

    [bold]Examples[/]

      gcsearch studies
      gcsearch studies --storage postgresql+psycopg://user@host/gcsearch --json
    """
    found = list_studies(storage)
    if as_json:
        console.file.write(json.dumps([summary_dict(s) for s in found], indent=2) + "\n")
        return
    if not found:
        console.print(f"no study in {mask_url(storage)}", highlight=False)
        return
    table = Table(title=f"Studies in {mask_url(storage)}", title_justify="left", header_style="bold",
                  box=box.SIMPLE_HEAD)
    for title, justify in (("study", "left"), ("complete", "right"), ("pruned", "right"), ("failed", "right"),
                           ("running", "right"), ("dataset", "left"), ("objectives", "left"),
                           ("last update", "left")):
        table.add_column(title, justify=justify)
    for s in found:
        d = summary_dict(s)
        table.add_row(s.name, str(s.counts["COMPLETE"]), str(s.counts["PRUNED"]), str(s.counts["FAIL"]),
                      str(s.counts["RUNNING"]), d["dataset"] or "-", ",".join(d["objectives"]) or "-",
                      local_time(s.last_update))
    wide(console).print(table)
