"""`gcsearch show`: one trial in full, as stored (read-only)."""

from __future__ import annotations

import json
from typing import Any

from rich.table import Table

from gcsearch.commands import console
from gcsearch.commands.options import JsonOpt, ReadStorageOpt, StudyOpt, TrialArg
from gcsearch.commands.view import local_time
from gcsearch.contract import Attr, Meta
from gcsearch.report.labels import short_label
from gcsearch.report.race import race_text
from gcsearch.storage.reader import read_trial
from gcsearch.storage.records import StudySummary, TrialRecord, summary_dict
from gcsearch.storage.urls import DEFAULT_STORAGE
from gcsearch.units import si


def show(
    trial: TrialArg,
    study: StudyOpt = None,
    storage: ReadStorageOpt = DEFAULT_STORAGE,
    as_json: JsonOpt = False,
) -> None:
    """One trial in full: state, spec, metrics, per-epoch accuracy, seed, device, versions, why it stopped.

    Read-only, like `report`: safe while workers run.

    [bold]Examples[/]

      gcsearch show 12 --study placement
      gcsearch show 12 -s placement --json | jq .user_attrs.accuracies
    """
    summary, record = read_trial(storage, study, trial)
    data = _trial_dict(summary, record)
    if as_json:
        console.file.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    _print_trial(summary, record)


def _trial_dict(summary: StudySummary, t: TrialRecord) -> dict[str, Any]:
    race = race_text(summary.user_attrs, str(t.user_attrs.get(Attr.KEY)))
    return {
        "study": summary.name, "number": t.number, "state": t.state.lower(), "values": t.values,
        "objectives": summary_dict(summary)["objectives"], "feasible": t.feasible, "constraints": t.constraints,
        "datetime_start": t.datetime_start.isoformat() if t.datetime_start else None,
        "datetime_complete": t.datetime_complete.isoformat() if t.datetime_complete else None,
        "duration_s": t.duration_s, "params": t.params, "user_attrs": t.user_attrs,
        "intermediate_values": {str(k): v for k, v in sorted(t.intermediate_values.items())},
    } | ({} if race is None else {"race": race})  # only a racing study's trials have one


def _print_trial(summary: StudySummary, t: TrialRecord) -> None:
    ua = t.user_attrs
    spec = ua.get(Attr.SPEC) if isinstance(ua.get(Attr.SPEC), dict) else None
    console.print(f"[bold]trial {t.number}[/] of study {summary.name}: {t.state.lower()}"
                  + (f", {short_label(spec)}" if spec else ""), highlight=False)
    facts: list[tuple[str, str]] = []
    if ua.get(Attr.LABEL):
        facts.append(("candidate", str(ua[Attr.LABEL])))
    if ua.get(Attr.KEY):
        facts.append(("key", str(ua[Attr.KEY])))
        if (race := race_text(summary.user_attrs, str(ua[Attr.KEY]))) is not None:
            facts.append(("race", race))
    names = summary_dict(summary)["objectives"]
    if t.values is not None:
        facts.append(("values", ", ".join(f"{n}={v:g}" for n, v in zip(names, t.values, strict=False))))
    if t.constraints:
        verdict = "feasible" if t.feasible else "infeasible"
        limits = summary.meta.get(Meta.CONSTRAINTS)
        facts.append(("constraints", f"{verdict}: " + ", ".join(
            constraint_text(k, v, limits if isinstance(limits, dict) else {}) for k, v in t.constraints.items())))
    metrics = [(Attr.ACCURACY, "accuracy", "{:.3f} %"), (Attr.FLOPS, "FLOPs", "{:,.0f}"),
               (Attr.PARAMS, "params", "{:,.0f}"), (Attr.BLOCK_FLOPS, "block FLOPs", "{:,.0f}"),
               (Attr.BLOCK_PARAMS, "block params", "{:,.0f}"), (Attr.TRAIN_SECONDS, "train time", "{:.1f} s"),
               (Attr.EPOCHS, "epochs", "{}"), (Attr.SEED, "seed", "{}"), (Attr.REPEAT, "repeat", "{}"),
               (Attr.DEVICE, "device", "{}"), (Attr.THREADS, "CPU threads", "{}"),
               (Attr.REUSED_FROM, "reused from trial", "{}"), (Attr.FAIL_REASON, "fail reason", "{}"),
               (Attr.PRUNED_EPOCH, "pruned at epoch", "{}"), (Attr.PRUNE_REASON, "prune reason", "{}")]
    for key, title, form in metrics:
        if ua.get(key) is not None:
            try:
                facts.append((title, form.format(ua[key])))
            except (TypeError, ValueError):
                facts.append((title, str(ua[key])))
    if ua.get(Attr.LATENCY_MS) is not None:
        lat = ua[Attr.LATENCY_MS]
        text = ", ".join(f"{k} {v:.2f} ms" for k, v in lat.items()) if isinstance(lat, dict) else f"{lat} ms"
        facts.append(("latency", text))
    if t.datetime_start:
        facts.append(("started", local_time(t.datetime_start)))
    if t.duration_s is not None:
        facts.append(("duration", f"{t.duration_s:.1f} s"))
    if isinstance(ua.get(Attr.VERSIONS), dict):
        facts.append(("versions", ", ".join(f"{k} {v}" for k, v in ua[Attr.VERSIONS].items())))
    if t.params:
        facts.append(("sampled params", ", ".join(f"{k}={v}" for k, v in t.params.items())))
    _print_pairs(facts)
    if spec:
        console.print("[bold]spec[/]", highlight=False)
        _print_pairs([(k, "-" if v is None else (",".join(map(str, v)) if isinstance(v, list) else str(v)))
                      for k, v in spec.items()])
    accuracies = ua.get(Attr.ACCURACIES)
    if isinstance(accuracies, list) and accuracies:
        console.print("[bold]accuracy per epoch (%)[/]", highlight=False)
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        for i in range(len(accuracies)):
            table.add_column(str(i + 1), justify="right")
        table.add_row(*(f"{a:.2f}" if isinstance(a, (int, float)) else str(a) for a in accuracies))
        console.print(table)
    other = {k: v for k, v in ua.items() if k not in {m[0] for m in metrics} | {
        Attr.SPEC, Attr.LABEL, Attr.KEY, Attr.ACCURACIES, Attr.VERSIONS, Attr.LATENCY_MS}}
    if other:
        console.print("[bold]other attributes[/]", highlight=False)
        _print_pairs([(k, json.dumps(v)) for k, v in other.items()])


def constraint_text(name: str, value: float, limits: dict[str, Any]) -> str:
    """A constraint as a person reads it, "flops 8.84M <= 50M", from Optuna's signed value (cost - limit) and
    the study's limit; Optuna's value when the study does not name the limit."""
    limit = limits.get(name)
    if not isinstance(limit, (int, float)) or isinstance(limit, bool):
        return f"{name}={value:g}"
    cost, shown = value + limit, (si(value + limit, ".3g"), si(limit, ".3g"))
    if shown[0] == shown[1] and value != 0:  # rounded alike: the counts themselves
        shown = (f"{cost:,.0f}", f"{limit:,.0f}")
    return f"{name.removeprefix('max_')} {shown[0]} {'<=' if value <= 0 else '>'} {shown[1]}"


def _print_pairs(pairs: list[tuple[str, str]]) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="dim")
    table.add_column(overflow="fold")
    for k, v in pairs:
        table.add_row(k, v)
    console.print(table)
