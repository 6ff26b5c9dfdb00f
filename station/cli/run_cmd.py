"""`indus run`: the station daemon."""

from __future__ import annotations

import json
import signal

import click

from station.audit.store import AuditError
from station.backends import BackendError
from station.camera.zmq_source import CameraError
from station.config import ConfigError, StationConfig


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="station.yaml")
@click.option("--check", is_flag=True, help="Validate the configuration and exit.")
def run(config_path: str, check: bool) -> None:
    """Run the inspection station until SIGTERM or Ctrl-C, then drain the parts in flight and exit."""
    try:
        config = StationConfig.from_yaml(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    if check:
        click.echo(f"{config_path}: valid (config version {config.version})")
        return
    from station.daemon import Station  # heavy imports only when really running

    try:
        station = Station(config)
    except (BackendError, AuditError, CameraError, OSError, ValueError) as exc:
        raise click.ClickException(f"cannot start the station: {exc}") from exc
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: station.stop())
    if station.server is not None:
        click.echo(f"operator page and metrics: {station.server.url}", err=True)
    stats = station.run_until_stopped()
    click.echo(json.dumps(stats.as_dict()))
