import json

import numpy as np
import pytest
from click.testing import CliRunner

from station.cli.main import main
from station.verdict import Verdict
from tools.image import save_image


@pytest.fixture
def images(tmp_path):
    paths = []
    for i in range(2):
        path = tmp_path / f"part{i}.png"
        save_image(path, np.full((64, 96, 3), 100 + i, np.uint8))
        paths.append(str(path))
    return paths


def run(*args):
    return CliRunner(env={"COLUMNS": "200"}).invoke(
        main, ["inspect", *map(str, args)], catch_exceptions=False
    )


def test_json_lines_hold_one_valid_verdict_per_image(images, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not an image")
    result = run(
        *images,
        corrupt,
        "--backend",
        "scripted",
        "--model",
        "crop-then:defect",
        "--product",
        "bottle",
        "--json",
    )
    assert result.exit_code == 0, result.output
    verdicts = [Verdict.model_validate_json(line) for line in result.stdout.strip().splitlines()]
    assert [v.part_id for v in verdicts] == [*images, str(corrupt)]
    assert [v.decision for v in verdicts] == ["reject"] * 3
    assert verdicts[0].type == "crack" and verdicts[0].tool_calls == 1 and verdicts[0].product == "bottle"
    assert verdicts[2].reason == "corrupt_frame" and "cannot decode" in verdicts[2].detail
    assert json.loads(result.stdout.splitlines()[0])["trace"][0]["tool_calls"][0]["name"] == "crop"


def test_table_output_and_limits(images):
    result = run(
        images[0], "--backend", "scripted", "--model", "fault:endless_tool_calls", "--max-tool-calls", "2"
    )
    assert result.exit_code == 0
    assert "reject" in result.output and "tool_limit" in result.output


def test_unusable_backends_fail_with_a_clear_message(images, tmp_path):
    result = run(images[0], "--backend", "scripted", "--model", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 1 and "cannot read script" in result.output
    result = run(images[0], "--backend", "openai", "--model", "qwen")
    assert result.exit_code == 1 and "--base-url" in result.output
    result = run(images[0], "--backend", "hf", "--model", str(tmp_path / "no-such-model"))
    assert result.exit_code == 1
