import json

import numpy as np
import pytest
from click.testing import CliRunner

from station.cli.main import main
from tools.image import load_image, save_image


@pytest.fixture
def part(tmp_path):
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(128, 4, (480, 640, 3)), 0, 255).astype(np.uint8)
    image[100:130, 400:440] = 30  # a dark defect at x 400-440, y 100-130
    path = tmp_path / "part.png"
    save_image(path, image)
    return path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_propose_json_matches_the_documented_shape(part):
    result = run("tools", "propose", part, "--k", "3", "--max-area", "0.0625", "--json")
    assert result.exit_code == 0, result.output
    boxes = json.loads(result.output)["boxes"]
    assert 1 <= len(boxes) <= 3
    assert [b["score"] for b in boxes] == sorted((b["score"] for b in boxes), reverse=True)
    for box in boxes:
        x1, y1, x2, y2 = box["bbox_px"]
        assert (x2 - x1) * (y2 - y1) <= 0.0625 * 640 * 480
        assert box["bbox"] == [
            round(x1 * 1000 / 640),
            round(y1 * 1000 / 480),
            round(x2 * 1000 / 640),
            round(y2 * 1000 / 480),
        ]
    x1, y1, x2, y2 = boxes[0]["bbox_px"]
    assert x1 <= 420 <= x2 and y1 <= 115 <= y2


def test_propose_table_and_bad_input(part, tmp_path):
    assert "bbox_px" in run("tools", "propose", part).output
    missing = run("tools", "propose", tmp_path / "nope.png")
    assert missing.exit_code != 0 and "no such image file" in missing.output
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG not really")
    result = run("tools", "propose", corrupt)
    assert result.exit_code != 0 and "cannot decode" in result.output
    assert run("tools", "propose", part, "--k", "0").exit_code == 2


def test_list_prints_the_schemas_the_model_sees():
    lines = run("tools", "list").output.strip().splitlines()
    assert [json.loads(line)["function"]["name"] for line in lines] == ["crop", "enhance", "prior", "measure"]


def test_call_runs_a_tool_through_the_registry_and_saves_its_images(part, tmp_path):
    out = tmp_path / "views"
    result = run("tools", "call", "crop", part, "--args", '{"bbox": [600, 180, 720, 300]}', "--out", out)
    assert result.exit_code == 0, result.output
    observation = json.loads(result.output.splitlines()[0])
    assert observation["tool"] == "crop" and observation["source"] == "model"
    assert load_image(out / "crop_0.png").shape[:2] == tuple(reversed(observation["size"]))


def test_call_reports_tool_errors_with_a_failing_exit_code(part):
    result = run("tools", "call", "measure", part, "--args", '{"operation": "distance", "items": [[1, 2]]}')
    assert result.exit_code == 1
    assert json.loads(result.output)["error"]["code"] == "invalid_items"
    assert run("tools", "call", "crop", part, "--args", "{bad").exit_code == 2


def test_prior_by_product_name(part):
    result = run("tools", "call", "prior", part, "--product", "metal-nut")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["name"] == "metal_nut"
