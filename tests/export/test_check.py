"""`indus export check`: torch and the export through one agent loop; failed below the bars."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from export.manifest import Manifest  # noqa: E402
from export.onnx import export_onnx  # noqa: E402
from station.backends.onnx.session import OnnxSession  # noqa: E402
from station.cli.main import main  # noqa: E402
from tools.image import save_image  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def export_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("check") / "fp32"
    export_onnx(tiny_model_dir, out)
    return out


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiny model gains nothing from a second torch thread and loses a lot when the other core is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def check(model: Path, export: Path, *extra: str, parts: int = 2):
    args = ["export", "check", "--model", str(model), "--export", str(export), "--synthetic", str(parts)]
    return CliRunner().invoke(main, [*args, "--max-new-tokens", "8", *extra])


def test_an_fp32_export_passes_and_its_parity_is_recorded(tiny_model_dir, export_dir):
    result = check(tiny_model_dir, export_dir, "--json")
    assert result.exit_code == 0, result.output
    assert "export check passed" in result.output
    parity = Manifest.read(export_dir).parity
    assert parity["passed"] and parity["failures"] == []
    assert len(parity["parts"]) == 2 and parity["token_agreement"] == 1.0 == parity["verdict_agreement"]
    assert parity["forced_greedy_agreement"] == 1.0 and parity["max_abs_logit_diff"] < 1e-4
    assert len(parity["logits"]["rounds"]) == 3  # crop, enhance, answer: a forced multi-round inspection
    part = next(iter(parity["parts"].values()))
    assert part["rounds"] and all(r["text_equal"] for r in part["rounds"])
    printed = json.loads(result.output[: result.output.rindex("}") + 1])
    assert printed["passed"]


def test_an_export_that_disagrees_with_torch_fails_with_the_reason(tiny_model_dir, export_dir, monkeypatch):
    forward = OnnxSession._forward

    def shifted(self, *args):  # the export's scores pushed towards another token at every step
        logits = forward(self, *args)
        logits[..., 7] += 1e4
        return logits

    monkeypatch.setattr(OnnxSession, "_forward", shifted)
    result = check(tiny_model_dir, export_dir, parts=1)
    assert result.exit_code == 1
    assert "export check failed: agent token agreement" in result.output
    assert "forced-turn greedy agreement" in result.output
    assert not Manifest.read(export_dir).parity["passed"]


def test_a_foreign_directory_and_an_impossible_bar_are_rejected(tiny_model_dir, tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    result = check(tiny_model_dir, tmp_path)
    assert result.exit_code == 1 and "manifest.json is corrupted" in result.output
    result = check(tiny_model_dir, tmp_path, "--min-token-agreement", "1.01")
    assert result.exit_code == 2 and "1.01" in result.output


def test_images_or_synthetic_parts_but_not_both(tiny_model_dir, tmp_path):
    image = tmp_path / "part.png"
    save_image(image, np.full((32, 32, 3), 90, np.uint8))
    result = check(tiny_model_dir, tmp_path, "--images", str(image))
    assert result.exit_code == 2 and "either --images or --synthetic" in result.output
