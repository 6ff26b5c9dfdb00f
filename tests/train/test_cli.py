import json

from click.testing import CliRunner

from calibration.synth import write_dataset
from train.cli import train


def test_cot_builds_a_balanced_set_and_reports_it(tmp_path):
    write_dataset(tmp_path / "parts", n=4, seed=0, size=96, categories=["pin_connector", "brushed_metal"])
    out = tmp_path / "cot"
    args = ["cot", "--dataset", f"synth:{tmp_path / 'parts'}", "--out", str(out), "--json"]
    result = CliRunner().invoke(train, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["written"] == report["good"] + report["defective"] and report["good"] == report["defective"]
    lines = (out / "trajectories.jsonl").read_text().splitlines()
    assert len(lines) == report["written"]
    again = CliRunner().invoke(train, args)
    assert again.exit_code == 1 and "exists" in again.output


def test_cot_style_reaches_the_teacher_and_is_refused_for_a_model_teacher(tmp_path):
    write_dataset(tmp_path / "parts", n=2, seed=0, size=96, categories=["pin_connector"])
    out = tmp_path / "cot"
    args = ["cot", "--dataset", f"synth:{tmp_path / 'parts'}", "--out", str(out), "--style", "terse"]
    result = CliRunner().invoke(train, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["teacher"] == {"kind": "programmatic", "style": "terse"}
    refused = CliRunner().invoke(train, [*args, "--teacher", "model", "--model", "m"])
    assert refused.exit_code == 2 and "--style" in refused.output


def test_cot_explains_a_bad_dataset(tmp_path):
    result = CliRunner().invoke(
        train, ["cot", "--dataset", f"mvtec:{tmp_path}", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1 and "mvtec" in result.output


def test_sft_and_grpo_report_bad_configs_by_file_and_key(tmp_path):
    config = tmp_path / "sft.yaml"
    config.write_text("model_dir: m\ndataset_dir: d\noutput_dir: o\nlearning_rate: fast\n")
    result = CliRunner().invoke(train, ["sft", "--config", str(config)])
    assert result.exit_code == 1 and "sft.yaml" in result.output and "learning_rate" in result.output
    config = tmp_path / "grpo.yaml"
    config.write_text("model_dir: m\noutput_dir: o\n")
    result = CliRunner().invoke(train, ["grpo", "--config", str(config)])
    assert result.exit_code == 1 and "dataset" in result.output
