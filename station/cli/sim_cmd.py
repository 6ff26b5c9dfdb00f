"""`indus sim`: simulated peers of the station (the camera; the PLC joins as ``sim plc``), for demos and tests
on a machine without a line.

Each peer is one command on the ``sim`` group: add another with ``@sim.command("name")`` here, or with
``sim.add_command(command)`` from its own module.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import click
import zmq
from rich.console import Console

from station.camera.simulator import SIM_MODES, CameraSimulator, folder_parts, generated_parts
from station.camera.wire import ENCODINGS


@click.group()
def sim() -> None:
    """Simulated peers of the station: feed it frames, check its verdicts."""


@sim.command()
@click.option(
    "--data",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="An `indus synth` folder: its synth_meta.jsonl says which parts are defective.",
)
@click.option(
    "--split",
    type=click.Choice(["test", "train", "all"]),
    default="test",
    show_default=True,
    help="Which of the folder's parts to send (test holds good and defective ones).",
)
@click.option("--generate", is_flag=True, help="Generate parts on the fly instead of reading --data.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Seed for --generate.")
@click.option("--size", default=256, show_default=True, type=click.IntRange(64, 4096), help="Side in px.")
@click.option(
    "--rate",
    "rate_hz",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Parts per second; 0 sends as fast as the station takes them.",
)
@click.option("--count", type=click.IntRange(min=1), help="Parts to send [default: until Ctrl-C].")
@click.option(
    "--mode",
    type=click.Choice(SIM_MODES),
    default="pull",
    show_default=True,
    help="pull: PUSH to a pull station (connects); sub: PUB for a sub station (binds); imagezmq: an "
    "imagezmq REQ sender (connects); imagezmq_pub: an imagezmq PUB sender (binds).",
)
@click.option("--encoding", type=click.Choice(ENCODINGS), default="raw", show_default=True)
@click.option("--endpoint", default="tcp://127.0.0.1:5555", show_default=True)
@click.option("--bind/--connect", default=None, help="Override the mode's usual side.")
@click.option(
    "--truth",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the ground truth here: one JSON line per part (part_id, product, label, defect).",
)
@click.option(
    "--deadline-ms", type=click.FloatRange(min=0, min_open=True), help="Each part's budget from capture."
)
@click.option(
    "--curve-keys",
    nargs=2,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CURVE: this camera's .key_secret file and the station's public .key file.",
)
def camera(
    data: Path | None,
    split: str,
    generate: bool,
    seed: int,
    size: int,
    rate_hz: float,
    count: int | None,
    mode: str,
    encoding: str,
    endpoint: str,
    bind: bool | None,
    truth: Path | None,
    deadline_ms: float | None,
    curve_keys: tuple[Path, Path] | None,
) -> None:
    """Send synthetic parts to a station, as a line camera would."""
    if (data is None) == (not generate):
        raise click.UsageError("give exactly one of --data DIR or --generate")
    try:
        parts = generated_parts(seed, size) if generate else folder_parts(data, split)
        simulator = CameraSimulator(
            parts,
            endpoint=endpoint,
            mode=mode,
            encoding=encoding,
            rate_hz=rate_hz,
            deadline_ms=deadline_ms,
            truth_path=truth,
            bind=bind,
            curve_keys=curve_keys or None,
        )
        console = Console(stderr=True)
        console.print(f"sending to {endpoint} ({mode}, {encoding}); Ctrl-C stops")
        started = time.monotonic()
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the way to end an endless run
            simulator.run(count)
    except (OSError, ValueError, zmq.ZMQError) as error:  # an unreadable folder, a bad endpoint
        raise click.ClickException(str(error)) from error
    console.print(f"sent {simulator.sent} part(s) in {time.monotonic() - started:.1f} s")


from station.cli.sim_plc_cmd import plc  # noqa: E402 - the PLC peer lives in its own module

sim.add_command(plc)
