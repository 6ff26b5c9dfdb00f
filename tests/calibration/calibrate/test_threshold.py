"""Threshold selection against rates worked out by hand, and the YAML update that records it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from calibration.calibrate import CalibrationError
from calibration.calibrate.cli import calibrate
from calibration.calibrate.threshold import choose_threshold
from calibration.validate.results import RESULTS_FILE, Result, write_results
from station.config import StationConfig
from station.verdict import Verdict

# bottle: 5 good (0.1, 0.2, 0.3, 0.6, a fail-safe) and 5 defective (0.4, 0.7, 0.8, 0.9, a fail-safe);
# cable: only fail-safes, so no confidence to choose from.
IMAGES = [
    ("bottle", 0, 0.1),
    ("bottle", 0, 0.2),
    ("bottle", 0, 0.3),
    ("bottle", 0, 0.6),
    ("bottle", 0, None),
    ("bottle", 1, 0.4),
    ("bottle", 1, 0.7),
    ("bottle", 1, 0.8),
    ("bottle", 1, 0.9),
    ("bottle", 1, None),
    ("cable", 0, None),
    ("cable", 1, None),
]

CONFIG = """\
# the line's station
model:
  backend: scripted
  model: answer:good
camera:
  endpoint: tcp://127.0.0.1:5555
products:
  cable:
    deadline_ms: 1500
    threshold: 0.4
queue_size: 8
"""


def _verdict(confidence: float | None) -> Verdict:
    if confidence is None:
        return Verdict(
            decision="reject", fail_safe=True, reason="deadline", threshold=0.5, backend="s", model="m"
        )
    decision = "reject" if confidence >= 0.5 else "accept"
    return Verdict(decision=decision, confidence=confidence, threshold=0.5, backend="s", model="m")


@pytest.fixture
def run(tmp_path: Path) -> Path:
    results = [
        Result(
            key=f"synth:{category}:{i}",
            image=f"{i}.png",
            category=category,
            label=label,
            defect="crack" if label else "good",
            mask=None,
            dataset="synth",
            verdict=_verdict(confidence),
        )
        for i, (category, label, confidence) in enumerate(IMAGES)
    ]
    write_results(tmp_path / RESULTS_FILE, results)
    return tmp_path


@pytest.mark.parametrize(
    ("target", "rate", "threshold", "escape", "false_reject"),
    [
        ("escape_rate", 0.2, 0.7, 0.2, 0.2),  # 0.8 would miss 0.4 and 0.7: 2 of 5
        ("escape_rate", 0.0, 0.4, 0.0, 0.4),  # the good 0.6 and the good fail-safe are rejected
        ("false_reject_rate", 0.2, 0.7, 0.2, 0.2),  # 0.6 is still rejected at 0.6: 2 of 5
        ("false_reject_rate", 0.4, 0.4, 0.0, 0.4),
    ],
)
def test_the_chosen_threshold_and_its_rates_match_the_hand_computed_ones(
    run, target, rate, threshold, escape, false_reject
) -> None:
    choice = choose_threshold(run, "bottle", target, rate)
    assert (choice.threshold, choice.escape_rate, choice.false_reject_rate) == (
        threshold,
        escape,
        false_reject,
    )
    assert (choice.good, choice.defective, choice.images, choice.fail_safes) == (5, 5, 10, 2)


def test_unreachable_targets_missing_confidences_and_files_are_explained(run, tmp_path) -> None:
    with pytest.raises(CalibrationError, match=r"best achievable is 0\.2 at threshold 0\.7 \(fail-safes"):
        choose_threshold(run, "bottle", "false_reject_rate", 0.1)
    with pytest.raises(CalibrationError, match="no verdict of category 'cable' has a confidence"):
        choose_threshold(run, "cable", "escape_rate", 0.1)
    with pytest.raises(CalibrationError, match="no result of category 'pcb'; categories: bottle, cable"):
        choose_threshold(run, "pcb", "escape_rate", 0.1)
    with pytest.raises(CalibrationError, match=r"no results\.jsonl in"):
        choose_threshold(tmp_path / "elsewhere", "bottle", "escape_rate", 0.1)


def test_the_cli_writes_the_threshold_and_keeps_everything_else(run, tmp_path) -> None:
    config = tmp_path / "station.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    args = ["threshold", "--run", str(run), "--product", "bottle", "--config", str(config)]
    result = CliRunner().invoke(calibrate, [*args, "--target-escape-rate", "0.2"])
    assert result.exit_code == 0, result.output
    assert "threshold 0.7 for bottle on 10 images" in result.output
    assert "1 of 5 defective" in result.output and "1 of 5 good" in result.output
    assert "products.bottle: new recipe" in result.output
    assert "products.bottle.threshold: (unset, default 0.5) -> 0.7" in result.output
    before, after = yaml.safe_load(CONFIG), yaml.safe_load(config.read_text(encoding="utf-8"))
    assert after == {**before, "products": {**before["products"], "bottle": {"threshold": 0.7}}}
    assert list(after) == list(before)  # order too
    assert (tmp_path / "station.yaml.bak").read_text(encoding="utf-8") == CONFIG
    assert StationConfig.from_yaml(config).products["bottle"].threshold == 0.7

    again = CliRunner().invoke(calibrate, [*args, "--target-false-reject-rate", "0.4"])
    assert again.exit_code == 0, again.output
    assert "products.bottle.threshold: 0.7 -> 0.4" in again.output
    assert (
        yaml.safe_load(config.read_text(encoding="utf-8"))["products"]["cable"] == before["products"]["cable"]
    )


def test_the_cli_refuses_without_exactly_one_target_or_with_an_unreachable_one(run, tmp_path) -> None:
    config = tmp_path / "station.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    args = ["threshold", "--run", str(run), "--product", "bottle", "--config", str(config)]
    both = CliRunner().invoke(
        calibrate, [*args, "--target-escape-rate", "0.1", "--target-false-reject-rate", "0.1"]
    )
    assert both.exit_code == 2 and "exactly one of" in both.output
    unreachable = CliRunner().invoke(calibrate, [*args, "--target-false-reject-rate", "0"])
    assert unreachable.exit_code == 1 and "best achievable" in unreachable.output
    assert config.read_text(encoding="utf-8") == CONFIG and not (tmp_path / "station.yaml.bak").exists()
