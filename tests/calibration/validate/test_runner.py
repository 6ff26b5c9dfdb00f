"""The runner over a synthetic benchmark: known verdicts give known figures, and runs resume exactly."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from calibration.validate.results import read_results
from calibration.validate.runner import RunMismatch, RunSpec, ValidationRun
from station.agent_config import AgentConfig
from station.backends.scripted import ANSWER_GOOD
from station.cli.main import main

OUTPUTS = ("results.jsonl", "metrics.json", "metrics.csv", "report.html")


def spec_for(parts: str, **agent) -> RunSpec:
    return RunSpec.create(f"synth:{parts}", backend="scripted", model="plan", agent=AgentConfig(**agent))


def test_known_verdicts_give_known_figures(planned_run, samples):
    out, inspection, reported = planned_run
    assert inspection.inspected == len(samples) == 8
    assert all((out / name).stat().st_size > 0 for name in OUTPUTS)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(reported))
    overall = metrics["overall"]
    c = overall["classification"]
    assert (c["tp"], c["fn"], c["fp"], c["tn"]) == (3, 1, 1, 3)
    assert c["balanced_accuracy"] == 0.75 and c["recall"] == 0.75 and c["false_reject_rate"] == 0.25
    # Defect scores 0.9, 0.3, 1.0 (fail-safe), 0.9 against good 0.1, 0.2, 0.7, 0.2: only 0.3 < 0.7 is lost.
    assert overall["ranking"]["auroc"] == 15 / 16
    assert overall["localization"] == {"masked": 4, "boxed": 1, "iou": 1.0, "hit_rate": 1.0}
    assert overall["defect_type"] == {"flagged": 2, "correct": 1, "accuracy": 0.5}
    assert overall["fail_safes"]["by_reason"] == {"parse_error": 1}
    assert overall["tools"]["by_name"] == {"crop": 1 / 8}
    for category in ("brushed_metal", "pin_connector"):
        assert metrics["categories"][category]["classification"]["balanced_accuracy"] == 0.75
    assert metrics["categories"]["pin_connector"]["classification"]["recall"] == 1.0
    assert metrics["run"]["spec"]["model"] == "plan" and len(metrics["run"]["fingerprint"]) == 16

    results, broken = read_results(out / "results.jsonl")
    assert broken == 0 and list(results) == [s.key for s in samples]
    scratch = next(r for r in results.values() if r.defect == "scratch")
    assert scratch.gt_boxes == [(30, 44, 39, 59)] and scratch.verdict.trace[0].tool_calls[0].name == "crop"
    assert scratch.image.endswith("scratch/000.png") and scratch.mask.endswith("000_mask.png")

    with (out / "metrics.csv").open() as rows:
        table = list(csv.DictReader(rows))
    assert [(r["scope"], r["category"]) for r in table] == [
        ("overall", ""),
        ("category_mean", ""),
        ("category", "brushed_metal"),
        ("category", "pin_connector"),
    ]
    assert float(table[0]["classification.balanced_accuracy"]) == 0.75


def test_cli_runs_the_same_loop_and_writes_all_outputs(parts, planned_backend, tmp_path, monkeypatch):
    backend = planned_backend()
    monkeypatch.setattr("station.cli.options.load_backend", lambda *args, **kwargs: backend)
    out = tmp_path / "run"
    args = ["validate", "--dataset", f"synth:{parts}", "--backend", "scripted", "--model", "plan"]
    args += ["--out", str(out), "--categories", "pin_connector", "--no-progress"]
    result = CliRunner(env={"COLUMNS": "240"}).invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert all((out / name).exists() for name in OUTPUTS)
    assert "4 image(s) inspected, 0 from earlier runs" in result.output
    assert "0.750" in result.output and "[0.500, 1.000]" in result.output  # balanced accuracy, interval
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["categories"]) == ["pin_connector"] and metrics["overall"]["images"] == 4
    assert json.loads((out / "run.json").read_text())["spec"]["categories"] == ["pin_connector"]


def test_an_interrupted_run_resumes_without_inspecting_finished_images(
    parts, samples, planned_backend, tmp_path
):
    out = tmp_path / "run"
    started: list[str] = []

    def stop_at_the_fourth(key: str) -> None:
        started.append(key)
        if len(started) == 4:
            raise KeyboardInterrupt  # Ctrl-C while the model works on image 4

    with pytest.raises(KeyboardInterrupt):
        ValidationRun(out, spec_for(parts)).inspect(planned_backend(stop_at_the_fourth), progress=False)
    results_file = out / "results.jsonl"
    finished = results_file.read_text().splitlines()
    assert len(finished) == 3 and not (out / "metrics.json").exists()
    # A kill in the middle of writing image 4 leaves half a line behind.
    with results_file.open("a") as f:
        f.write(finished[0][: len(finished[0]) // 2].replace(samples[0].key, samples[3].key))

    again: list[str] = []
    run = ValidationRun(out, spec_for(parts))
    inspection = run.inspect(planned_backend(again.append), progress=False)
    assert again == [s.key for s in samples[3:]]  # the remaining five, the torn one among them
    assert inspection.inspected == 5 and len(inspection.results) == 8
    lines = results_file.read_text().splitlines()
    assert lines[:3] == finished  # finished images are kept byte for byte
    keys = [json.loads(line)["key"] for line in lines]
    assert sorted(keys) == sorted(s.key for s in samples)  # each exactly once
    assert [r.key for r in inspection.results] == [s.key for s in samples]

    third: list[str] = []
    rerun = ValidationRun(out, spec_for(parts)).inspect(planned_backend(third.append), progress=False)
    assert third == [] and rerun.inspected == 0 and len(rerun.results) == 8


def test_limit_takes_the_first_images_and_can_be_extended(parts, samples, planned_backend, tmp_path):
    out, seen = tmp_path / "run", []
    run = ValidationRun(out, spec_for(parts))
    first = run.inspect(planned_backend(seen.append), limit=2, progress=False)
    assert [r.key for r in first.results] == seen == [s.key for s in samples[:2]]
    more = ValidationRun(out, spec_for(parts)).inspect(planned_backend(seen.append), limit=5, progress=False)
    assert more.inspected == 3 and seen == [s.key for s in samples[:5]]


def test_a_different_setup_is_refused_unless_restarted(parts, planned_backend, tmp_path):
    out = tmp_path / "run"
    ValidationRun(out, spec_for(parts)).inspect(planned_backend(), limit=1, progress=False)
    with pytest.raises(RunMismatch, match=r"agent\.threshold: 0\.5 -> 0\.6.*--restart"):
        ValidationRun(out, spec_for(parts, threshold=0.6))
    seen: list[str] = []
    restarted = ValidationRun(out, spec_for(parts, threshold=0.6), restart=True)
    inspection = restarted.inspect(planned_backend(seen.append), limit=2, progress=False)
    assert inspection.inspected == 2 and len(seen) == 2
    assert {r.verdict.threshold for r in inspection.results} == {0.6}
    assert len((out / "results.jsonl").read_text().splitlines()) == 2
    assert json.loads((out / "run.json").read_text())["spec"]["agent"]["threshold"] == 0.6


def validate_cli(*args: object) -> object:
    return CliRunner(env={"COLUMNS": "240"}).invoke(
        main, ["validate", *map(str, args)], catch_exceptions=False
    )


def test_cli_refuses_a_changed_model_and_restarts_on_request(parts, tmp_path):
    common = [
        "--dataset",
        f"synth:{parts}",
        "--backend",
        "scripted",
        "--out",
        tmp_path / "run",
        "--no-progress",
    ]
    assert validate_cli(*common, "--model", "answer:good", "--limit", "2").exit_code == 0
    refused = validate_cli(*common, "--model", "answer:defect", "--limit", "2")
    assert refused.exit_code == 1
    assert 'model: "answer:good" -> "answer:defect"' in refused.output and "--restart" in refused.output
    restarted = validate_cli(*common, "--model", "answer:defect", "--limit", "2", "--restart")
    assert restarted.exit_code == 0 and "2 image(s) inspected, 0 from earlier runs" in restarted.output
    missing = validate_cli("--dataset", f"synth:{parts}", "--backend", "scripted")
    assert missing.exit_code == 2 and "missing --model, --out" in missing.output
    assert validate_cli(*common, "--model", "answer:good", "--json").exit_code == 2
    wrong = validate_cli(
        "--dataset", f"mvtec:{tmp_path}/nope", "--model", "answer:good", "--out", tmp_path / "x"
    )
    assert wrong.exit_code == 1 and "does not exist" in wrong.output


@pytest.mark.slow
def test_a_run_killed_with_sigkill_continues(parts, samples, tmp_path):
    script = tmp_path / "slow.json"  # a model that takes 0.15 s per image
    script.write_text(json.dumps({"turns": [{"text": ANSWER_GOOD, "delay_s": 0.15}]}))
    out, log = tmp_path / "run", tmp_path / "child.log"
    args = ["validate", "--dataset", f"synth:{parts}", "--backend", "scripted", "--model", str(script)]
    args += ["--out", str(out), "--no-progress"]
    code = "import sys; from station.cli.main import main; sys.exit(main())"
    with log.open("w") as child_log:
        child = subprocess.Popen([sys.executable, "-c", code, *args], stdout=child_log, stderr=child_log)
    results_file = out / "results.jsonl"
    deadline = time.monotonic() + 30
    while not (results_file.exists() and results_file.read_text().count("\n") >= 2):
        assert child.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the child never finished two images"
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    before, _ = read_results(results_file)
    assert 2 <= len(before) < len(samples)

    result = validate_cli(*args[1:])
    assert result.exit_code == 0, result.output
    assert (
        f"{len(samples) - len(before)} image(s) inspected, {len(before)} from earlier runs" in result.output
    )
    after, broken = read_results(results_file)
    assert broken == 0 and sorted(after) == sorted(s.key for s in samples)
    assert all(after[key] == result for key, result in before.items())  # not recomputed
    assert len(results_file.read_text().splitlines()) == len(samples)


def test_fingerprint_follows_what_changes_verdicts(parts, tmp_path, monkeypatch):
    monkeypatch.chdir(Path(parts).parent)
    assert spec_for(Path(parts).name).fingerprint == spec_for(parts).fingerprint  # relative = absolute
    assert spec_for(parts).fingerprint != spec_for(parts, deadline_s=5).fingerprint
    weights = tmp_path / "model" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"epoch 1")

    def trained() -> str:
        return RunSpec.create(f"synth:{parts}", backend="hf", model=str(weights.parent)).fingerprint

    before = trained()
    assert trained() == before
    weights.write_bytes(b"epoch 2, more bytes")  # retrained into the same folder
    assert trained() != before
