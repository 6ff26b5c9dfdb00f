import math

import pytest

from tools.measure import MeasureError, measure


def rel(x_px, y_px, w, h):
    return [x_px * 1000 / w, y_px * 1000 / h]


def test_distance_converts_each_axis_to_pixels():
    # 2000x1000 frame: the same grid step is 2 px across and 1 px down.
    out = measure("distance", [[0, 0], [500, 500]], 2000, 1000)
    assert out["distance_px"] == pytest.approx(math.hypot(1000, 500), abs=0.01)
    assert (out["dx_px"], out["dy_px"]) == (1000, 500)


def test_distance_between_boxes_reports_the_edge_gap_and_mm():
    out = measure("distance", [[100, 100, 200, 200], [300, 100, 400, 200]], 1000, 1000, mm_per_px=0.05)
    assert out["distance_px"] == 200
    assert out["gap_px"] == 100
    assert out["gap_mm"] == pytest.approx(5.0)
    assert out["distance_mm"] == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([[100, 100], [200, 100]], 0.0),
        ([[100, 100], [100, 200]], 90.0),  # image y grows downwards
        ([[200, 200], [100, 100]], -135.0),
    ],
)
def test_direction_angle(items, expected):
    assert measure("angle", items, 1000, 1000)["angle_deg"] == pytest.approx(expected)


def test_angle_at_the_middle_point():
    assert measure("angle", [[100, 100], [100, 500], [600, 500]], 800, 800)["angle_deg"] == pytest.approx(90)
    assert measure("angle", [[0, 0], [500, 500], [1000, 1000]], 800, 800)["angle_deg"] == pytest.approx(180)


def test_position_words_and_overlap():
    out = measure("position", [[600, 600, 700, 700], [100, 100, 400, 400]], 1000, 1000)
    assert out["direction"] == "below-right"
    assert out["iou"] == 0 and out["inside"] is False
    inner = measure("position", [[200, 200, 300, 300], [100, 100, 400, 400]], 1000, 1000)
    assert inner["inside"] is True and inner["iou"] == pytest.approx(1 / 9, abs=1e-3)


def test_spacing_recovers_the_pitch_of_a_row_in_any_order():
    w, h, pitch = 1200, 800, 90.0
    boxes = []
    for i in [3, 0, 4, 1, 2]:  # shuffled: the tool orders along the row itself
        x = 200 + i * pitch
        boxes.append([*rel(x - 10, 300, w, h), *rel(x + 10, 360, w, h)])
    out = measure("spacing", boxes, w, h)
    assert out["median_gap_px"] == pytest.approx(pitch, abs=0.1)
    assert out["irregular_gaps"] == []
    assert out["order"] == [1, 3, 4, 0, 2]
    assert out["max_offset_from_row_px"] == pytest.approx(0, abs=0.1)


def test_spacing_flags_a_missing_and_a_shifted_component():
    w = h = 1000
    xs = [100, 200, 300, 500, 600]  # the one at 400 is missing
    out = measure("spacing", [[x, 500] for x in xs], w, h)
    assert out["irregular_gaps"] == [2]
    assert out["max_gap_px"] == pytest.approx(200)
    shifted = measure("spacing", [[100, 500], [200, 500], [300, 540], [400, 500], [500, 500]], w, h)
    assert shifted["max_offset_from_row_px"] > 25


def test_vertical_rows_work_too():
    out = measure("spacing", [[500, 100], [500, 300], [500, 500]], 1000, 1000)
    assert out["gaps_px"] == [200, 200]
    assert abs(out["row_angle_deg"]) == pytest.approx(90)


@pytest.mark.parametrize(
    ("operation", "items", "message"),
    [
        ("distance", [[1, 2], [3, 4], [5, 6]], "exactly 2"),
        ("distance", [[1, 2, 3], [3, 4]], "point [x, y] or a box"),
        ("distance", [[1, 2], [3, 4000]], "0..1000"),
        ("distance", [[1, 2], [3, float("nan")]], "finite"),
        ("position", [[5, 5, 1, 1], [3, 4]], "x2 > x1"),
        ("angle", [[1, 2]], "2 items"),
        ("angle", [[1, 2], [1, 2]], "coincide"),
        ("spacing", [[1, 2]], "at least 2"),
        ("volume", [[1, 2], [3, 4]], "unknown operation"),
    ],
)
def test_bad_items_raise_a_readable_error(operation, items, message):
    with pytest.raises(MeasureError, match=message.replace("[", r"\[").replace("]", r"\]")):
        measure(operation, items, 100, 100)


def test_without_scale_units_say_so():
    assert "no pixel scale" in measure("distance", [[0, 0], [1, 1]], 10, 10)["units"]
    assert "distance_mm" not in measure("distance", [[0, 0], [1, 1]], 10, 10)
