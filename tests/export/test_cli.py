import json

import numpy as np
from click.testing import CliRunner

from station.cli.main import main
from tools.image import save_image


def test_export_onnx_then_inspect_with_the_onnx_backend(tiny_model_dir, tmp_path):
    out = tmp_path / "onnx"
    result = CliRunner().invoke(main, ["export", "onnx", "--model", str(tiny_model_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["quantization"] == "none"
    image = tmp_path / "part.png"
    save_image(image, np.full((96, 128, 3), 120, np.uint8))
    args = [
        "inspect",
        str(image),
        "--backend",
        "onnx",
        "--model",
        str(out),
        "--max-new-tokens",
        "8",
        "--json",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout.strip().splitlines()[-1])
    assert verdict["backend"] == "onnx" and verdict["decision"] == "reject"  # a random model: fail-safe
    assert verdict["trace"][0]["prefill_tokens"] > 0


def test_export_of_a_missing_model_fails_clearly(tmp_path):
    result = CliRunner().invoke(
        main, ["export", "onnx", "--model", str(tmp_path / "none"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1 and "none" in result.output
