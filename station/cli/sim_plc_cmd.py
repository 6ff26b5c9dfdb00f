"""`indus sim plc`: a PLC on a pty for running a station without the line (see station.plc.simulator)."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import click
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from station.plc.config import ModbusMap
from station.plc.simulator import PlcSimulator


def _modbus_map(path: str | None) -> ModbusMap:
    if path is None:
        return ModbusMap()
    try:
        return ModbusMap.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})
    except (yaml.YAMLError, ValidationError) as exc:
        raise click.BadParameter(str(exc), param_hint="--modbus-map") from exc


@click.command("plc")
@click.option("--protocol", type=click.Choice(["ascii", "modbus"]), default="ascii", show_default=True)
@click.option(
    "--truth",
    type=click.Path(exists=True, dir_okay=False),
    help='Ground truth to score what the PLC took: JSON lines {"part_id", "label": "good"|"defective"}.',
)
@click.option(
    "--link",
    type=click.Path(dir_okay=False),
    help="Create this symlink to the pty: a stable path for the station's port setting.",
)
@click.option(
    "--ack-delay-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Hold every ACK (Modbus: response) back this long.",
)
@click.option(
    "--drop-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Fraction of verdict lines (Modbus: request and response frames) lost on the wire.",
)
@click.option("--no-heartbeat-echo", is_flag=True, help="Do not echo heartbeat lines (ascii).")
@click.option(
    "--modbus-map",
    type=click.Path(exists=True, dir_okay=False),
    help="YAML/JSON with the station's plc.modbus settings (unit id, register addresses).",
)
@click.option("--seed", type=int, help="Seed for --drop-rate.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of a table.")
def plc(
    protocol: str,
    truth: str | None,
    link: str | None,
    ack_delay_ms: float,
    drop_rate: float,
    no_heartbeat_echo: bool,
    modbus_map: str | None,
    seed: int | None,
    as_json: bool,
) -> None:
    """Play the PLC on a pseudo-terminal until Ctrl-C or SIGTERM, then print what it took."""
    try:
        simulator = PlcSimulator(
            protocol,  # type: ignore[arg-type] - click.Choice checked it
            truth=truth,
            link=link,
            ack_delay_s=ack_delay_ms / 1000,
            drop_rate=drop_rate,
            answer_heartbeats=not no_heartbeat_echo,
            modbus=_modbus_map(modbus_map),
            seed=seed,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with simulator:
            click.echo(f"PLC simulator ({protocol}) on {simulator.device_path}; Ctrl-C to stop", err=True)
            while not stop.wait(0.5):
                pass
            summary = simulator.summary()
    except FileExistsError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if as_json:
        click.echo(json.dumps(summary))
        return
    table = Table(title=f"PLC simulator ({protocol})")
    table.add_column("count")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if key != "protocol":
            table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    Console().print(table)
