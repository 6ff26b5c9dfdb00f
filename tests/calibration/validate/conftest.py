"""A small synthetic benchmark and a scripted model whose every verdict is known in advance."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from calibration.datasets import Sample, open_dataset
from calibration.synth import write_dataset
from calibration.validate.runner import Inspection, RunSpec, ValidationRun
from station.backends.scripted import CROP_CALL, ScriptedBackend
from station.protocol.turns import Answer, think_block

CATEGORIES = ("brushed_metal", "pin_connector")
# Text from the model that must reach the report escaped, never as markup.
HOSTILE = '<script>alert("x")</script> & <b>bold</b>'


@pytest.fixture(scope="session")
def parts(tmp_path_factory) -> str:
    """`indus synth --n 4 --size 64`: per category 2 good and 2 defective test images, one mask component
    each."""
    root = tmp_path_factory.mktemp("parts")
    write_dataset(root, 4, 0, 64, CATEGORIES)
    return str(root)


@pytest.fixture(scope="session")
def samples(parts) -> list[Sample]:
    return list(open_dataset(f"synth:{parts}").samples())


def digest(image: np.ndarray) -> str:
    return hashlib.sha1(image.tobytes()).hexdigest()


def answer(anomaly: bool, confidence: float, type: str | None = None, bbox=None, note: str = "") -> str:
    return Answer(
        anomaly=anomaly,
        type=type,
        bbox=bbox,
        confidence=confidence,
        content=think_block(note or "Looked at it."),
    ).text


def mask_box(sample: Sample) -> tuple[float, ...]:
    """The mask's bounding box on the 0-1000 grid, exact in pixels for a 64 px image (1000/64 is binary)."""
    mask = sample.load_mask()
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    return (xs.min() * 1000 / w, ys.min() * 1000 / h, (xs.max() + 1) * 1000 / w, (ys.max() + 1) * 1000 / h)


@pytest.fixture(scope="session")
def plan(samples: list[Sample]) -> dict[str, list[str]]:
    """Turns per sample key, chosen so that every figure is known:

    brushed_metal: good 0.1, 0.2 accepted; scratch: crop, then reject 0.9 "Scratch" on the mask's box;
    stain: accepted at 0.3 (an escape, with hostile text). pin_connector: good 0.7 rejected (false reject),
    0.2 accepted; missing_pin: garbage (parse_error fail-safe); shifted_pin: reject 0.9 as "bent pin".
    """
    by_name = {f"{s.category}/{s.defect}/{s.image.name}": s for s in samples}
    scratch = by_name["brushed_metal/scratch/000.png"]
    turns = {
        "brushed_metal/good/000.png": [answer(False, 0.1)],
        "brushed_metal/good/001.png": [answer(False, 0.2)],
        "brushed_metal/scratch/000.png": [CROP_CALL, answer(True, 0.9, "Scratch", mask_box(scratch))],
        "brushed_metal/stain/000.png": [answer(False, 0.3, note=HOSTILE)],
        "pin_connector/good/000.png": [answer(True, 0.7, "crack")],
        "pin_connector/good/001.png": [answer(False, 0.2)],
        "pin_connector/missing_pin/000.png": ["}}{{ not a turn"],
        "pin_connector/shifted_pin/000.png": [answer(True, 0.9, "bent pin")],
    }
    assert set(turns) == set(by_name)
    return {by_name[name].key: plan for name, plan in turns.items()}


@pytest.fixture(scope="session")
def planned_backend(samples: list[Sample], plan: dict[str, list[str]]) -> Callable[..., ScriptedBackend]:
    """Makes a model that recognises each image by its pixels and plays that image's planned turns;
    ``on_first_round(key)`` sees each image as the model starts on it."""
    keys = {digest(s.load_image()): s.key for s in samples}
    assert len(keys) == len(samples)

    def make(on_first_round: Callable[[str], None] = lambda key: None) -> ScriptedBackend:
        def policy(index: int, messages: list[dict]) -> str:
            key = keys[digest(messages[1]["content"][0]["image"])]
            if index == 0:
                on_first_round(key)
            return plan[key][index]

        return ScriptedBackend(policy=policy, label="plan")

    return make


@pytest.fixture(scope="session")
def planned_run(parts, planned_backend, tmp_path_factory) -> tuple[Path, Inspection, dict]:
    """One complete run of the plan through the runner API (folder, inspection, metrics), shared by the
    figure, report and comparison tests."""
    out = tmp_path_factory.mktemp("planned")
    run = ValidationRun(out, RunSpec.create(f"synth:{parts}", backend="scripted", model="plan"))
    inspection = run.inspect(planned_backend(), progress=False)
    return out, inspection, run.report(inspection.results)
