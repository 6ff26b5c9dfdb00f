"""CURVE: an authorised camera gets through, an unknown or plaintext one does not."""

from __future__ import annotations

from pathlib import Path

import pytest
import zmq.auth
from click.testing import CliRunner
from pydantic import ValidationError

from station.camera.curve import CurveServerConfig
from station.camera.simulator import CameraSimulator, SimPart
from station.camera.zmq_source import CameraConfig
from station.cli.main import main


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """Key pairs as an operator makes them: the station's, an enrolled camera's, and a stranger's."""
    enrolled = tmp_path / "cameras"
    for folder in ("station", "cameras", "strangers"):
        (tmp_path / folder).mkdir()
    zmq.auth.create_certificates(tmp_path / "station", "station")
    zmq.auth.create_certificates(enrolled, "cam1")
    zmq.auth.create_certificates(tmp_path / "strangers", "cam2")
    (enrolled / "cam1.key_secret").rename(tmp_path / "cam1.key_secret")  # the camera keeps its secret
    return {
        "station_secret": tmp_path / "station" / "station.key_secret",
        "station_public": tmp_path / "station" / "station.key",
        "enrolled": enrolled,
        "cam1": tmp_path / "cam1.key_secret",
        "cam2": tmp_path / "strangers" / "cam2.key_secret",
    }


def _send(endpoint: str, image, curve_keys, linger_s: float = 2.0) -> CameraSimulator:
    part = SimPart("x", image, "good", "good", "")
    simulator = CameraSimulator([part], endpoint, curve_keys=curve_keys, linger_s=linger_s)
    simulator.start(1)
    return simulator


@pytest.mark.parametrize("camera", ["cam2", None], ids=["unknown-key", "plaintext"])
def test_only_enrolled_cameras_get_through(station, keys, make_image, camera: str | None) -> None:
    image = make_image(16, 16)
    curve = CurveServerConfig(
        server_secret_key_file=keys["station_secret"], client_public_keys_dir=keys["enrolled"]
    )
    source = station(mode="pull", curve=curve)
    outsider = _send(source.endpoint, image, camera and (keys[camera], keys["station_public"]), linger_s=0)
    enrolled = _send(source.endpoint, image, (keys["cam1"], keys["station_public"]))
    try:
        frame = source.receive(2.0)
        assert frame is not None and frame.error is None and frame.part_id == "part-000000"
        assert source.receive(0.3) is None  # the outsider's frame never arrives
        assert enrolled.join(2.0) and enrolled.sent == 1
    finally:
        outsider.stop()
        enrolled.stop()


def test_allow_any_encrypts_without_authenticating(station, keys, make_image) -> None:
    curve = CurveServerConfig(server_secret_key_file=keys["station_secret"], allow_any=True)
    simulator = CameraSimulator(
        iter(lambda: SimPart("x", make_image(16, 16), "good", "good", ""), None),
        "tcp://127.0.0.1:*",
        mode="sub",
        rate_hz=100,
        curve_keys=(keys["cam2"], keys["station_public"]),
    )
    simulator.start()  # the camera binds and is the CURVE client; the station connects and is the server
    try:
        source = station(mode="sub", curve=curve, endpoint=simulator.bound_endpoint)
        frame = source.receive(2.0)
    finally:
        simulator.stop()
    assert frame is not None and frame.error is None


def test_curve_config_errors(keys) -> None:
    with pytest.raises(ValidationError, match="holds no secret key"):
        CurveServerConfig(server_secret_key_file=keys["station_public"], allow_any=True)
    with pytest.raises(ValidationError, match="exactly one of"):
        CurveServerConfig(server_secret_key_file=keys["station_secret"])
    with pytest.raises(ValidationError, match="exactly one of"):
        CurveServerConfig(
            server_secret_key_file=keys["station_secret"],
            client_public_keys_dir=keys["enrolled"],
            allow_any=True,
        )
    with pytest.raises(ValidationError, match="does not point to a file"):
        CurveServerConfig(server_secret_key_file=keys["enrolled"] / "nope", allow_any=True)
    with pytest.raises(ValidationError, match="imagezmq senders cannot do CURVE"):
        CameraConfig(
            mode="imagezmq_rep", curve={"server_secret_key_file": keys["station_secret"], "allow_any": True}
        )


def test_cli_sends_as_an_enrolled_camera(station, keys) -> None:
    curve = CurveServerConfig(
        server_secret_key_file=keys["station_secret"], client_public_keys_dir=keys["enrolled"]
    )
    source = station(mode="pull", curve=curve)
    args = ["--generate", "--size", "64", "--count", "1", "--rate", "0", "--endpoint", source.endpoint]
    keys_args = ["--curve-keys", str(keys["cam1"]), str(keys["station_public"])]
    result = CliRunner().invoke(main, ["sim", "camera", *args, *keys_args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    frame = source.receive(2.0)
    assert frame is not None and frame.error is None and frame.image.shape == (64, 64, 3)
