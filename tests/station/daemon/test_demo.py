import json

from click.testing import CliRunner

from station.cli.main import main


def test_demo_json_summary_with_a_scripted_model():
    result = CliRunner().invoke(
        main,
        ["demo", "--parts", "6", "--rate", "50", "--backend", "scripted", "--model", "answer:good", "--json"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["parts_sent"] == 6 and summary["verdicts"] == 6 and summary["plc_acknowledged"] == 6
    assert summary["accepted"] == 6 and summary["plc_duplicates"] == 0 and summary["drops"] == 0
    assert 0 <= summary["accuracy"] <= 1 and summary["latency_p50_ms"] > 0
    assert summary["notice"] is None


def test_without_a_shipped_demo_model_the_tiny_one_runs_and_says_it_detects_nothing(
    tiny_model_dir, monkeypatch, tmp_path
):
    import station.demo

    monkeypatch.setattr(station.demo, "shipped_demo_model", lambda: None)  # a checkout without the demo model
    monkeypatch.setenv("INDUS_CACHE", str(tmp_path))
    (tmp_path / "tiny-qwen3-vl-seed0").symlink_to(tiny_model_dir)
    result = CliRunner().invoke(main, ["demo", "--parts", "3", "--rate", "20"])
    assert result.exit_code == 0, result.output
    assert "not detections" in result.output.replace("\n", " ")
    assert "verdicts" in result.output


def test_demo_needs_a_model_for_other_backends():
    result = CliRunner().invoke(main, ["demo", "--backend", "scripted"])
    assert result.exit_code == 1 and "--model" in result.output
