"""`indus audit`: read the station's audit database, and label recorded parts for re-validation."""

from __future__ import annotations

import json
import time
from datetime import datetime

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from station.audit import AuditDB, AuditError

_DB = click.Path(dir_okay=False, path_type=str)


def _since(value: str | None) -> float | None:
    """Seconds since the epoch, or an ISO date/time in local time (2026-11-21 or 2026-11-21T14:30)."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither epoch seconds nor an ISO date/time") from None


def _open(db: str) -> AuditDB:
    try:
        return AuditDB(db)
    except AuditError as exc:
        raise click.ClickException(str(exc)) from exc


def _ms(start: float | None, end: float | None) -> str:
    return "-" if start is None or end is None else f"{(end - start) * 1000:.0f}"


def _table(rows: list[dict], title: str) -> Table:
    table = Table(title=title)
    for column in ("received", "part", "product", "decision", "type", "confidence", "reason", "tools"):
        table.add_column(column, justify="right" if column in ("confidence", "tools") else "left")
    table.add_column("ms to verdict", justify="right")
    for column in ("plc", "label"):
        table.add_column(column)
    for row in rows:
        decision = row["decision"] or f"[yellow]{row['stage']}[/]"
        if row["decision"]:
            decision = f"[{'red' if row['decision'] == 'reject' else 'green'}]{decision}[/]"
        label = row["label"] or ""
        if row["label_defect"]:
            label += f" ({row['label_defect']})"
        table.add_row(  # part ids, products and types are outside text: never rich markup
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["received_ts"])),
            escape(row["part_id"]),
            escape(row["product"] or "-"),
            decision,
            escape(row["type"] or "-"),
            "-" if row["confidence"] is None else f"{row['confidence']:.3f}",
            escape(row["reason"] or ""),
            "-" if row["tool_calls"] is None else str(row["tool_calls"]),
            _ms(row["received_ts"], row["verdict_ts"]),
            row["plc_outcome"] or "-",
            escape(label),
        )
    return table


def _trace(console: Console, row: dict) -> None:
    """What the model did for one part: the detail a person needs to judge a disputed verdict."""
    console.print(f"[bold]{escape(row['part_id'])}[/] run {row['run_id']}, model {escape(str(row['model']))}")
    if row["detail"]:
        console.print(f"  detail: {row['detail']}", markup=False)
    if row["evidence_path"]:
        console.print(f"  evidence: {row['evidence_path']}", markup=False)
    for rnd in (row["verdict"] or {}).get("trace", []):
        calls = ", ".join(f"{c['name']}({json.dumps(c['arguments'])})" for c in rnd["tool_calls"])
        console.print(f"  round {rnd['index'] + 1}: {rnd['kind']} {calls}".rstrip(), markup=False)


@click.group(invoke_without_command=True)
@click.option("--db", type=_DB, help="The station's audit database (SQLite).")
@click.option("--last", "last_n", type=click.IntRange(min=1), help="The newest N parts (default 20).")
@click.option("--rejects", is_flag=True, help="Rejected parts, newest first.")
@click.option("--since", help="With --rejects or --counts: from this time (epoch seconds or ISO, local).")
@click.option("--part", "part_id", help="Every record of one part id, with the model's tool trace.")
@click.option("--unfinished", is_flag=True, help="Parts received without a verdict (the station stopped).")
@click.option("--counts", is_flag=True, help="Parts per decision and fail-safe reason.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, with the full verdict.")
@click.pass_context
def audit(
    ctx: click.Context,
    db: str | None,
    last_n: int | None,
    rejects: bool,
    since: str | None,
    part_id: str | None,
    unfinished: bool,
    counts: bool,
    as_json: bool,
) -> None:
    """Show what the station recorded: the last parts, rejects, one part, unfinished parts or counts."""
    ctx.obj = db
    if ctx.invoked_subcommand is not None:
        return
    if db is None:
        raise click.UsageError("--db is required")
    chosen = [last_n is not None, rejects, part_id is not None, unfinished, counts]
    if sum(chosen) > 1:
        raise click.UsageError("choose one of --last, --rejects, --part, --unfinished, --counts")
    if since is not None and not (rejects or counts):
        raise click.UsageError("--since goes with --rejects or --counts")
    since_ts = _since(since)
    store = _open(db)
    try:
        if counts:
            rows = store.counts(since_ts)
        elif rejects:
            rows, title = store.rejects(since_ts), "rejects"
        elif part_id is not None:
            rows, title = store.part(part_id), f"part {part_id}"
        elif unfinished:
            rows, title = store.unfinished(), "unfinished parts"
        else:
            rows, title = store.last(last_n or 20), f"last {last_n or 20} parts"
    except AuditError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    console = Console()
    if counts:
        table = Table(title="parts by decision and reason")
        for column in ("decision", "reason", "parts"):
            table.add_column(column, justify="right" if column == "parts" else "left")
        for row in rows:
            table.add_row(row["decision"] or "(no verdict)", escape(row["reason"] or ""), str(row["parts"]))
        console.print(table)
        return
    console.print(_table(rows, f"{title}: {len(rows)} record(s)"))
    if part_id is not None:
        for row in rows:
            _trace(console, row)


@audit.command()
@click.option("--db", type=_DB, help="The station's audit database (or give it before `label`).")
@click.argument("part_id")
@click.argument("label", type=click.Choice(["good", "defective"]))
@click.option("--defect", help="The defect type of a defective part (e.g. crack).")
@click.pass_context
def label(ctx: click.Context, db: str | None, part_id: str, label: str, defect: str | None) -> None:
    """Record the ground truth of a recorded part (its newest record), for re-validation."""
    db = db or ctx.obj
    if db is None:
        raise click.UsageError("--db is required")
    try:
        _open(db).set_label(part_id, label, defect)  # type: ignore[arg-type]
    except KeyError:
        raise click.ClickException(f"no part {part_id!r} in {db}") from None
    except (ValueError, AuditError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{part_id}: {label}" + (f" ({defect})" if defect else ""))
