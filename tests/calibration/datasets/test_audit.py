"""Recorded production frames with later human labels, read back as re-validation samples."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from calibration.datasets import DatasetError, open_dataset
from station.agent import Agent
from station.audit import AuditStore
from station.backends.scripted import ANSWER_DEFECT, ANSWER_GOOD, ScriptedBackend
from station.camera.base import Frame
from station.observability.stamps import Stamps

IMAGE = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)


def _record(store: AuditStore, part_id: str, product: str | None, answer: str) -> None:
    agent = Agent(ScriptedBackend([answer]))
    try:
        verdict = agent.inspect(IMAGE, product, part_id=part_id)
    finally:
        agent.close()
    now = time.time()
    frame = Frame(
        part_id=part_id, seq=0, capture_ts=now, product=product, image=None, received_ts=now, decoded_ts=now
    )
    store.record_received(frame)
    store.record_verdict(part_id, verdict, Stamps.of(frame, inspect_start=now, verdict=now))


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """Five parts: a labelled reject and accept of bottle, a labelled cable whose frame was pruned, an
    unlabelled accept, and a labelled part recorded without a product."""
    path = tmp_path / "indus-audit.db"
    with AuditStore(path, tmp_path / "indus-evidence", keep_evidence="all") as store:
        _record(store, "B-1", "bottle", ANSWER_DEFECT)
        _record(store, "B-2", "bottle", ANSWER_GOOD)
        _record(store, "C-1", "cable", ANSWER_GOOD)
        _record(store, "B-3", "bottle", ANSWER_GOOD)
        _record(store, "X-1", None, ANSWER_GOOD)
        store.flush()
        store.set_label("B-1", "defective", "crack")
        store.set_label("B-2", "good")
        store.set_label("C-1", "defective")
        store.set_label("X-1", "defective")
        shutil.rmtree(tmp_path / "indus-evidence" / store.part("C-1")[0]["evidence_path"])
    return path


def test_labelled_parts_with_frames_become_samples_and_the_rest_is_counted(database) -> None:
    loader = open_dataset(f"audit:{database}")
    assert loader.categories() == ["bottle", "no_product"]
    assert loader.skipped == {"unlabelled": 1, "no_evidence": 1}
    samples = list(loader.samples())
    assert [(s.category, s.label, s.defect, s.mask, s.dataset) for s in samples] == [
        ("bottle", 1, "crack", None, "audit"),
        ("bottle", 0, "good", None, "audit"),
        ("no_product", 1, "defective", None, "audit"),
    ]
    assert all(s.image.name == "00_frame.png" for s in samples)
    assert np.array_equal(samples[0].load_image(), IMAGE) and samples[0].load_mask() is None
    assert [s.image for s in open_dataset(f"audit:{database}", ["no_product"]).samples()] == [
        samples[2].image
    ]


def test_a_station_config_names_the_database_and_its_evidence(database, tmp_path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (tmp_path / "indus-evidence").rename(site / "frames")
    config = site / "station.yaml"
    config.write_text(
        "model: {backend: scripted, model: 'answer:good'}\n"
        f"audit: {{path: {database}, evidence_dir: frames}}\n",
        encoding="utf-8",
    )
    assert len(list(open_dataset(f"audit:{config}").samples())) == 3
    with pytest.raises(
        DatasetError, match=r"1 part\(s\) have no human label .* 4 labelled part\(s\) have no stored"
    ):
        open_dataset(f"audit:{database}")  # beside the database, the frames are gone now


def test_wrong_files_and_unknown_categories_are_explained(database, tmp_path) -> None:
    with pytest.raises(DatasetError, match="audit: no audit database at"):
        open_dataset(f"audit:{tmp_path / 'missing.db'}")
    (tmp_path / "notes.db").write_bytes(b"not sqlite at all, just some text " * 10)
    with pytest.raises(DatasetError, match="audit: "):
        open_dataset(f"audit:{tmp_path / 'notes.db'}")
    with pytest.raises(DatasetError, match=r"categories not found .*: cable; present: bottle, no_product"):
        open_dataset(f"audit:{database}", ["cable"])
