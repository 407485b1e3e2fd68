"""`gcsearch studies`: the studies in a storage, with trial counts by state (read-only)."""

from __future__ import annotations

import json

from rich import box
from rich.measure import Measurement
from rich.table import Table

from gcsearch.commands import console, wide
from gcsearch.commands.options import JsonOpt, ReadStorageOpt
from gcsearch.commands.view import local_time
from gcsearch.storage.reader import list_studies
from gcsearch.storage.records import summary_dict
from gcsearch.storage.urls import DEFAULT_STORAGE, StorageURL, mask_url


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
    out = wide(console)
    rows = [{"study": s.name, "complete": str(s.counts["COMPLETE"]), "pruned": str(s.counts["PRUNED"]),
             "failed": str(s.counts["FAIL"]), "running": str(s.counts["RUNNING"]),
             "dataset": summary_dict(s)["dataset"] or "-",
             "objectives": ",".join(summary_dict(s)["objectives"]) or "-", "last update": local_time(s.last_update)}
            for s in found]
    hidden: list[str] = []
    table = _table(storage, rows, hidden)
    # On a narrow terminal, leave columns out rather than cut every value to "synthet…".
    for name in ("objectives", "dataset"):
        if Measurement.get(out, out.options.update_width(10_000), table).maximum <= out.width:
            break
        hidden.append(name)
        table = _table(storage, rows, hidden)
    out.print(table)
    if hidden:
        out.print(f"(narrowed for the terminal: hidden {', '.join(hidden)}; --json has every field)", style="dim",
                  highlight=False, markup=False)


def _table(storage: StorageURL, rows: list[dict[str, str]], hidden: list[str]) -> Table:
    table = Table(title=f"Studies in {mask_url(storage)}", title_justify="left", header_style="bold",
                  box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for title, justify in (("study", "left"), ("complete", "right"), ("pruned", "right"), ("failed", "right"),
                           ("running", "right"), ("dataset", "left"), ("objectives", "left"),
                           ("last update", "left")):
        if title not in hidden:
            # Only a study's name may fold: every other value is short and is never cut.
            table.add_column(title, justify=justify, no_wrap=title != "study", overflow="fold")
    for row in rows:
        table.add_row(*(value for key, value in row.items() if key not in hidden))
    return table
