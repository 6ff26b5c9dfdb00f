"""The shipped demo model: `demo` resolves to it, and it inspects a synthetic part as the station runs it."""

from __future__ import annotations

import numpy as np
import pytest

from station.models import DEMO_MODEL_DIR, resolve_model, shipped_demo_model

pytestmark = pytest.mark.skipif(shipped_demo_model() is None, reason="this checkout carries no demo model")


def test_demo_resolves_to_the_shipped_directory_and_other_names_pass_through():
    assert resolve_model("demo") == str(DEMO_MODEL_DIR)
    assert resolve_model("runs/sft") == "runs/sft"


def test_the_shipped_model_is_small_fp16_and_documented():
    from safetensors import safe_open

    weights = DEMO_MODEL_DIR / "model.safetensors"
    assert weights.stat().st_size <= 20 * 1024 * 1024
    with safe_open(weights, "pt") as tensors:
        assert {str(tensors.get_tensor(k).dtype) for k in tensors.keys()} == {"torch.float16"}  # noqa: SIM118
    card = (DEMO_MODEL_DIR / "README.md").read_text(encoding="utf-8")
    assert "indus train demo --config train/configs/demo.yaml" in card


def test_the_demo_model_inspects_parts_with_tools_and_well_formed_answers():
    pytest.importorskip("torch")
    from calibration.synth.parts import generate_part
    from station.agent import Agent
    from station.agent_config import AgentConfig
    from station.backends import load_backend

    backend = load_backend("hf", resolve_model("demo"), device="cpu")
    agent = Agent(backend, AgentConfig(max_new_tokens=384, deadline_s=60))
    rng = np.random.default_rng(12345)
    verdicts = [
        agent.inspect(generate_part(category, defect, 256, rng).image, product=category)
        for category, defect in (
            ("wood_grain", "crack"),
            ("woven_fabric", None),
            ("pin_connector", "bent_pin"),
        )
    ]
    backend.close()
    for verdict in verdicts:
        assert not verdict.fail_safe, (verdict.reason, verdict.detail)  # every round parsed, answered
        assert verdict.anomaly is not None and 0 <= verdict.confidence <= 1
    assert sum(verdict.tool_calls for verdict in verdicts) >= 1


def test_indus_demo_runs_the_shipped_model_by_default():
    pytest.importorskip("torch")
    import json

    from click.testing import CliRunner

    from station.cli.main import main

    result = CliRunner().invoke(main, ["demo", "--parts", "2", "--rate", "1", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["model"].endswith("demo") and "demo model" in summary["notice"]
    assert summary["verdicts"] == summary["plc_acknowledged"] == 2
    assert not summary["fail_safes"], summary["fail_safes"]


def test_indus_validate_resolves_demo_to_the_shipped_model(tmp_path):
    pytest.importorskip("torch")
    import json

    from click.testing import CliRunner

    from calibration.synth import write_dataset
    from station.cli.main import main

    write_dataset(tmp_path / "parts", n=2, seed=4242, categories=["wood_grain"])
    out = tmp_path / "run"
    args = ["validate", "--dataset", f"synth:{tmp_path / 'parts'}", "--model", "demo", "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--max-new-tokens", "384", "--no-progress"])
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["spec"]["model"] == str(DEMO_MODEL_DIR)
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["overall"]["images"] == 2
