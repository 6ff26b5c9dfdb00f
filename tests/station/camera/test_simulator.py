"""The camera simulator and `indus sim camera`: what synth_meta says goes out, and the truth file matches."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from click.testing import CliRunner

from calibration.synth import write_dataset
from calibration.synth.dataset import META_FILE
from station.camera.simulator import SYNTH_META, CameraSimulator, folder_parts, generated_parts
from station.cli.main import main
from tools.image import load_image


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("synth")
    return out, write_dataset(out, n=2, seed=0, size=64, categories=["brushed_metal", "pin_connector"])


def _truth(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_meta_file_name_matches_the_writer() -> None:
    assert SYNTH_META == META_FILE


def test_folder_parts_are_sent_as_listed_with_their_truth(station, receive_all, synth_dir, tmp_path) -> None:
    root, rows = synth_dir
    test_rows = [row for row in rows if row["split"] == "test"]
    count = len(test_rows) + 2  # wraps around to the start
    source = station(mode="pull")
    truth_path = tmp_path / "truth.jsonl"
    simulator = CameraSimulator(
        folder_parts(root), source.endpoint, encoding="png", truth_path=truth_path, deadline_ms=500
    )
    simulator.start(count)
    try:
        frames = receive_all(source, count)
        assert simulator.join(2.0) and simulator.sent == count
    finally:
        simulator.stop()
    expected = [test_rows[i % len(test_rows)] for i in range(count)]
    truth = _truth(truth_path)
    assert [t["part_id"] for t in truth] == [f.part_id for f in frames]
    for frame, row, line in zip(frames, expected, truth, strict=True):
        assert frame.error is None and frame.meta == {}  # nothing on the wire hints at the label
        assert frame.product == row["category"] == line["product"] and frame.deadline_ms == 500
        assert (line["label"], line["defect"], line["source"]) == (row["label"], row["defect"], row["path"])
        np.testing.assert_array_equal(frame.image, load_image(root / row["path"]))
    assert {line["label"] for line in truth} == {"good", "defective"}


def test_folder_errors(synth_dir, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="not an `indus synth` folder"):
        folder_parts(tmp_path)
    (tmp_path / SYNTH_META).write_text("")
    with pytest.raises(ValueError, match="no 'test' parts"):
        folder_parts(tmp_path)
    assert len(list(itertools.islice(folder_parts(synth_dir[0], "all"), 10))) == 10


def test_generated_parts_are_reproducible_and_mixed() -> None:
    first = list(itertools.islice(generated_parts(seed=3, size=64), 12))
    again = list(itertools.islice(generated_parts(seed=3, size=64), 12))
    assert all(
        np.array_equal(a.image, b.image) and a.defect == b.defect for a, b in zip(first, again, strict=True)
    )
    assert {part.label for part in first} == {"good", "defective"}
    assert all(part.image.shape == (64, 64, 3) for part in first)


def test_rate_and_stop(station, receive_all) -> None:
    source = station(mode="pull")
    simulator = CameraSimulator(generated_parts(seed=0, size=64), source.endpoint, rate_hz=50)
    simulator.start()  # endless
    started = time.monotonic()
    frames = receive_all(source, 6)
    elapsed = time.monotonic() - started
    simulator.stop(timeout_s=1.0)
    assert 0.08 <= elapsed <= 1.0  # 5 intervals of 20 ms, then some
    assert [f.seq for f in frames] == list(range(6))
    with pytest.raises(RuntimeError, match="already started"):
        simulator.start()


def test_run_errors_reach_the_caller(tmp_path) -> None:
    simulator = CameraSimulator(generated_parts(seed=0, size=64), "tcp://127.0.0.1:bad", mode="pull")
    simulator.start(1)
    with pytest.raises(zmq.ZMQError, match="Invalid argument"):
        simulator.join(1.0)


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_cli_sends_folder_parts_and_writes_truth(station, receive_all, synth_dir, tmp_path) -> None:
    root, _ = synth_dir
    source = station(mode="pull")
    truth = tmp_path / "truth.jsonl"
    args = ("--data", root, "--count", 4, "--rate", 0, "--endpoint", source.endpoint, "--truth", truth)
    result = run("sim", "camera", *args, "--encoding", "jpeg", "--deadline-ms", 300)
    assert result.exit_code == 0, result.output
    assert "sent 4 part(s)" in result.output
    frames = receive_all(source, 4)  # small frames: all fit in the socket buffers while the CLI ran
    assert [f.part_id for f in frames] == [t["part_id"] for t in _truth(truth)]
    assert all(f.error is None and f.deadline_ms == 300 for f in frames)


def test_cli_generates_and_rejects_bad_arguments(station, receive_all, synth_dir) -> None:
    source = station(mode="pull")
    result = run(
        "sim", "camera", "--generate", "--size", 64, "--count", 2, "--rate", 0, "--endpoint", source.endpoint
    )
    assert result.exit_code == 0, result.output
    assert all(f.image.shape == (64, 64, 3) for f in receive_all(source, 2))
    for args in ([], ["--generate", "--data", synth_dir[0]]):
        result = run("sim", "camera", *args)
        assert result.exit_code == 2 and "exactly one of --data DIR or --generate" in result.output
    result = run("sim", "camera", "--generate", "--endpoint", "nonsense", "--count", 1)
    assert result.exit_code == 1 and "Invalid argument" in result.output
    assert "camera" in run("sim", "--help").output


def test_a_second_run_goes_on_numbering(station, receive_all, tmp_path) -> None:
    source = station(mode="pull")
    truth = tmp_path / "truth.jsonl"
    simulator = CameraSimulator(generated_parts(seed=1, size=64), source.endpoint, truth_path=truth)
    simulator.run(3)
    frames = receive_all(source, 3)  # before the next run: PULL interleaves two connections' queues
    simulator.run(2)
    frames += receive_all(source, 2)
    assert [f.seq for f in frames] == list(range(5))
    assert [line["part_id"] for line in _truth(truth)] == [f.part_id for f in frames]
