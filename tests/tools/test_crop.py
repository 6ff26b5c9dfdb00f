import numpy as np
import pytest

from tools.boxes import expand_px, px_to_rel, rel_to_px
from tools.crop import crop


@pytest.fixture
def frame():
    return np.random.default_rng(0).integers(0, 256, (600, 800, 3), dtype=np.uint8)


def test_returns_exactly_the_region_at_full_resolution(frame):
    result = crop(frame, [250, 500, 500, 750], padding=0, min_side=0, min_output_side=0)
    assert result.source == "model" and result.note is None
    assert result.bbox_px == (200, 300, 400, 450)
    np.testing.assert_array_equal(result.patch, frame[300:450, 200:400])
    assert result.bbox == (250, 500, 500, 750)


def test_padding_adds_context_around_the_box(frame):
    result = crop(frame, [250, 500, 500, 750], padding=0.1, min_side=0, min_output_side=0)
    assert result.bbox_px == (180, 285, 420, 465)
    np.testing.assert_array_equal(result.patch, frame[285:465, 180:420])


def test_tiny_box_grows_to_the_minimum_side_and_is_upscaled(frame):
    result = crop(frame, [500, 500, 501, 501], padding=0, min_side=32, min_output_side=224)
    x1, y1, x2, y2 = result.bbox_px
    assert (x2 - x1, y2 - y1) == (32, 32)
    assert x1 <= 400 < x2 and y1 <= 300 < y2
    assert result.patch.shape[:2] == (224, 224)


def test_box_at_the_border_shifts_inside_rather_than_shrinking(frame):
    result = crop(frame, [990, 990, 1000, 1000], padding=0, min_side=64, min_output_side=0)
    assert result.bbox_px == (736, 536, 800, 600)


def test_output_is_bounded_in_pixels(frame):
    result = crop(frame, [0, 0, 1000, 1000], max_pixels=100 * 100)
    h, w = result.patch.shape[:2]
    assert h * w <= 100 * 100
    assert abs(w / h - 800 / 600) < 0.05


@pytest.mark.parametrize(
    "bbox",
    [None, [1, 2, 3], [5, 5, 1, 1], [0, 0, 2000, 10], ["a", 0, 1, 1], "left corner", [float("nan"), 0, 1, 1]],
)
def test_missing_or_invalid_box_falls_back_to_the_proposal(bbox):
    image = np.full((400, 400, 3), 120, np.uint8)
    image[300:320, 60:80] = 20  # one dark spot: the proposal's obvious pick
    result = crop(image, bbox, padding=0, min_side=0, min_output_side=0)
    assert result.source == "proposal" and "most suspicious" in result.note
    x1, y1, x2, y2 = result.bbox_px
    assert x1 <= 70 < x2 and y1 <= 310 < y2


def test_grey_frames_stay_grey():
    image = np.zeros((100, 100), np.uint8)
    assert crop(image, [0, 0, 500, 500]).patch.ndim == 2


def test_box_conversions_are_consistent():
    w, h = 1920, 1080
    px = rel_to_px([100, 200, 300, 400], w, h)
    assert px == (192, 216, 576, 432)
    assert px_to_rel(px, w, h) == (100, 200, 300, 400)
    assert expand_px((0, 0, 10, 10), 50, 50, padding=0.5) == (0, 0, 20, 20)
