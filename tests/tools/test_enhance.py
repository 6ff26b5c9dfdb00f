import numpy as np
import pytest

from tools.enhance import enhance


def stained_plate(delta=5, size=256, seed=0):
    """A flat grey plate with mild noise and a round stain only `delta` grey levels darker."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    base = 140 + 20 * (xx / size)  # illumination gradient
    mask = (xx - 150) ** 2 + (yy - 100) ** 2 < 22**2
    image = base - delta * mask + rng.normal(0, 1.0, (size, size))
    return np.clip(image, 0, 255).astype(np.uint8), mask


def contrast(view, mask):
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    ring = ((xx - 150) ** 2 + (yy - 100) ** 2 < 40**2) & ~mask
    return abs(view[mask].mean() - view[ring].mean())


def test_clahe_raises_the_contrast_of_a_faint_stain():
    image, mask = stained_plate()
    before = contrast(image.astype(float), mask)
    after = contrast(enhance(image, "clahe").astype(float), mask)
    assert after > 2 * before


def test_highpass_removes_the_illumination_gradient_and_keeps_a_scratch():
    image, _ = stained_plate(delta=0)
    image[120, 40:200] = 100  # a one-pixel scratch
    view = enhance(image, "highpass").astype(float)
    left, right = view[20:60, 10:50].mean(), view[20:60, 200:250].mean()
    assert abs(left - right) < 3  # the gradient is gone
    assert view[120, 60:180].mean() < view[20:60, 60:180].mean() - 40


def test_edges_light_up_on_the_outline_of_an_object():
    image = np.full((200, 200), 50, np.uint8)
    image[50:150, 50:150] = 200
    view = enhance(image, "edges")
    assert view[100, 50] > 200 and view[100, 100] < 10


def test_region_and_pixel_budget():
    image = np.random.default_rng(1).integers(0, 255, (2048, 2048, 3), dtype=np.uint8)
    full = enhance(image, "clahe", max_pixels=512 * 512)
    assert full.ndim == 2 and full.shape[0] * full.shape[1] <= 512 * 512
    region = enhance(image, "edges", (100, 200, 300, 260), max_pixels=512 * 512)
    assert region.shape == (60, 200)


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="unknown enhance mode"):
        enhance(np.zeros((8, 8), np.uint8), "sharpen")
