"""Every tool, called through the registry as the agent calls it, on synthetic parts with known answers."""

import numpy as np
import pytest

from calibration.synth import generate_part
from tools.boxes import px_to_rel
from tools.registry import ToolContext
from tools.toolkit import default_registry

REGISTRY = default_registry()


def part(category, defect=None, seed=0, size=256):
    return generate_part(category, defect, size, np.random.default_rng(seed))


def context(synth_part, **kwargs):
    return ToolContext(frame=synth_part.image, **kwargs)


def rel_boxes(boxes, size):
    return [list(px_to_rel(b, size, size)) for b in boxes]


@pytest.mark.parametrize("seed", range(5))
def test_measure_recovers_the_pin_pitch_the_generator_drew(seed):
    p = part("pin_connector", seed=seed)
    pins = p.geometry["pins"]
    obs = REGISTRY.call("measure", {"operation": "spacing", "items": rel_boxes(pins, 256)}, context(p))
    assert obs.ok, obs.error
    assert obs.data["median_gap_px"] == pytest.approx(p.geometry["pitch_px"], abs=0.6)
    assert obs.data["irregular_gaps"] == []


def test_measure_flags_a_missing_pin_and_reports_millimetres():
    p = part("pin_connector", "missing_pin", seed=3)
    obs = REGISTRY.call(
        "measure",
        {"operation": "spacing", "items": rel_boxes(p.geometry["pins"], 256)},
        context(p, mm_per_px=0.1),
    )
    assert len(obs.data["irregular_gaps"]) == 1
    assert obs.data["max_gap_px"] == pytest.approx(2 * p.geometry["pitch_px"], abs=1.0)
    assert obs.data["max_gap_mm"] == pytest.approx(obs.data["max_gap_px"] * 0.1, abs=0.01)


def test_measure_recovers_the_hole_grid_pitch():
    p = part("hole_plate", seed=1)
    holes = p.geometry["holes"]
    px, _ = p.geometry["pitch_px"]
    first_row = sorted(holes, key=lambda h: (round(h[1]), h[0]))[:2]
    items = [[cx * 1000 / 256, cy * 1000 / 256] for cx, cy, _ in first_row]
    obs = REGISTRY.call("measure", {"operation": "distance", "items": items}, context(p))
    assert obs.data["distance_px"] == pytest.approx(px, abs=0.6)


def test_crop_returns_the_defect_region_of_the_frame():
    p = part("wood_grain", "crack", seed=2)
    x1, y1, x2, y2 = p.geometry["change"]["bbox"]
    obs = REGISTRY.call("crop", {"bbox": list(px_to_rel((x1, y1, x2, y2), 256, 256))}, context(p))
    assert obs.ok and obs.data["source"] == "model"
    cx1, cy1, cx2, cy2 = obs.data["bbox_px"]
    assert cx1 <= x1 and cy1 <= y1 and cx2 >= x2 and cy2 >= y2
    assert (cx2 - cx1) * (cy2 - cy1) < 0.25 * 256 * 256
    assert obs.images[0].shape[0] >= 224  # upscaled for the vision encoder


def test_crop_without_a_box_zooms_into_a_proposed_region():
    p = part("pin_connector", "missing_pin", seed=0)
    obs = REGISTRY.call("crop", {"bbox": "the missing one"}, context(p))
    assert obs.ok and obs.data["source"] == "proposal" and "note" in obs.data
    assert len(obs.images) == 1


@pytest.mark.parametrize("seed", range(4))
def test_clahe_raises_the_local_contrast_of_a_faint_stain(seed):
    p = part("brushed_metal", "stain", seed=seed)
    mask = p.mask > 0
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    yy, xx = np.mgrid[:256, :256]
    ring = (np.hypot(yy - cy, xx - cx) < np.sqrt(mask.sum() / np.pi) * 2) & ~mask

    def contrast(view):  # grey levels between the stain and its surroundings
        view = view.astype(float)
        return abs(view[mask].mean() - view[ring].mean())

    obs = REGISTRY.call("enhance", {"mode": "clahe"}, context(p))
    assert obs.ok and obs.images[0].shape == (256, 256)
    before = contrast(p.image.mean(axis=2))
    assert contrast(obs.images[0]) > 2 * before


def test_enhance_rejects_a_bad_region_with_a_readable_error():
    obs = REGISTRY.call("enhance", {"mode": "edges", "bbox": [50, 50, 10, 10]}, context(part("lag_screw")))
    assert obs.error["code"] == "invalid_bbox" and "x2 > x1" in obs.error["message"]
    obs = REGISTRY.call("enhance", {"mode": "sharpen"}, context(part("lag_screw")))
    assert obs.error["code"] == "invalid_arguments"


def test_prior_uses_the_product_under_inspection_by_default():
    from tools.prior import PriorStore

    ctx = context(part("lag_screw"), product="pin connector", priors=PriorStore.default(embedder="lexical"))
    obs = REGISTRY.call("prior", {}, ctx)
    assert obs.ok and obs.data["name"] == "pin_connector"
    assert "missing_pin" in obs.data["prior"]
    assert REGISTRY.call("prior", {"name": "zzqx#"}, ctx).error["code"] == "no_prior"
    assert REGISTRY.call("prior", {}, context(part("lag_screw"))).error["code"] == "missing_name"
