"""The `indus` command.

Sub-commands that live above `station` in the import order (calibration, train, export) register
themselves under the ``indus.commands`` entry-point group in pyproject.toml; they are found here at start-up,
so the runtime never imports the packages built on top of it.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

import click

from station.cli.audit_cmd import audit
from station.cli.demo_cmd import demo
from station.cli.inspect_cmd import inspect
from station.cli.model_cmd import model
from station.cli.run_cmd import run
from station.cli.sim_cmd import sim
from station.cli.tools_cmd import tools


class IndusGroup(click.Group):
    """Adds the entry-point commands lazily, so `indus --help` stays fast and a broken plugin is reported
    as that plugin's error instead of breaking every command."""

    def _plugins(self) -> dict:
        return {ep.name: ep for ep in entry_points(group="indus.commands")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugins()})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        entry = self._plugins().get(name)
        if entry is None:
            return None
        try:
            return entry.load()
        except Exception as exc:  # an optional extra missing, typically
            raise click.ClickException(f"command {name!r} could not be loaded: {exc}") from exc


@click.group(cls=IndusGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="indus-station")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug).")
def main(verbose: int) -> None:
    """indus-station: open-vocabulary industrial inspection with a tool-using vision-language model."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


main.add_command(tools)
main.add_command(model)
main.add_command(inspect)
main.add_command(sim)
main.add_command(audit)
main.add_command(run)
main.add_command(demo)


if __name__ == "__main__":
    main()
