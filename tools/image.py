"""Frames as the whole project holds them: RGB (or single-channel) uint8 numpy arrays.

OpenCV reads BGR and may return 16-bit or 4-channel images; converting once, here, means every tool
and the model see the same pixels whatever the camera or file format was.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


class ImageError(ValueError):
    """A frame that cannot be used: unreadable file, wrong dtype or shape."""


def as_uint8(image: np.ndarray) -> np.ndarray:
    """Validate a frame and bring it to uint8 HxW or HxWx3 (RGB order is the caller's contract)."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected a numpy array, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ImageError(f"expected HxW or HxWx3, got shape {image.shape}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ImageError(f"frame too small: {image.shape[1]}x{image.shape[0]}")
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * 255
    if np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise ImageError("frame holds NaN or infinite values")
        scale = 255.0 if float(image.max(initial=0.0)) <= 1.0 else 1.0
        return np.clip(image * scale, 0, 255).astype(np.uint8)
    raise ImageError(f"unsupported dtype {image.dtype}")


def to_gray(image: np.ndarray) -> np.ndarray:
    """Luminance of an RGB frame; a grey frame passes through."""
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def to_rgb(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 (grey files stay single-channel)."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"no such image file: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ImageError(f"cannot decode image: {path}")
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    elif image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return as_uint8(image)


def save_image(path: str | Path, image: np.ndarray) -> None:
    """Write an RGB or grey uint8 frame; the format follows the file suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, buf = cv2.imencode(path.suffix or ".png", out)
    if not ok:
        raise ImageError(f"cannot encode image as {path.suffix}")
    buf.tofile(str(path))


def fit_pixels(image: np.ndarray, max_pixels: int, min_side: int = 0) -> np.ndarray:
    """Resize so that width*height <= max_pixels, and upscale so the short side reaches min_side.

    Upscaling small patches gives the vision encoder more tokens on the region of interest;
    the pixel bound keeps every observation inside the round's image-token budget.
    """
    h, w = image.shape[:2]
    scale = 1.0
    if min_side and min(h, w) < min_side:
        scale = min_side / min(h, w)
    if (h * scale) * (w * scale) > max_pixels:
        scale = (max_pixels / (h * w)) ** 0.5
    if abs(scale - 1.0) < 1e-6:
        return image
    size = (max(1, int(w * scale)), max(1, int(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(image, size, interpolation=interp)
