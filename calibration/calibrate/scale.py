"""Pixel scale (and optionally lens distortion) from images of a printed checkerboard.

The `measure` tool converts pixels of the raw frame to millimetres with one factor, so the scale is taken
from the raw corner positions: the board's known square size over the mean distance between adjacent inner
corners. The board should lie where parts lie, flat and facing the camera; the spread of the per-image
values shows how well that held. ``calibrateCamera`` is optional: the station does not undistort frames,
but its RMS reprojection error says whether the lens bends straight lines enough to matter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from calibration.calibrate import CalibrationError
from calibration.datasets.files import images
from tools.image import ImageError, load_image, to_gray

_FIND_FLAGS = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
_SUBPIX = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-3)


def parse_pattern(text: str) -> tuple[int, int]:
    """'9x6' -> (9, 6): inner corners per row and per column, as OpenCV counts them."""
    found = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not found or min(int(found[1]), int(found[2])) < 2:
        raise CalibrationError(f"pattern {text!r}: expected COLSxROWS inner corners, each at least 2 (9x6)")
    return int(found[1]), int(found[2])


@dataclass(frozen=True)
class Board:
    image: Path
    size: tuple[int, int]  # width, height
    corners: np.ndarray  # rows x cols x 2, pixels, refined to sub-pixel

    @property
    def mean_step_px(self) -> float:
        """Mean distance between neighbouring corners along rows and along columns."""
        along_rows = np.linalg.norm(np.diff(self.corners, axis=1), axis=-1)
        along_cols = np.linalg.norm(np.diff(self.corners, axis=0), axis=-1)
        return float(np.concatenate([along_rows.ravel(), along_cols.ravel()]).mean())


def find_board(path: Path, pattern: tuple[int, int]) -> Board | None:
    """The board's corners in one image, or None where OpenCV does not find the whole pattern."""
    try:
        grey = to_gray(load_image(path))
    except ImageError as error:
        raise CalibrationError(str(error)) from None
    found, corners = cv2.findChessboardCorners(grey, pattern, flags=_FIND_FLAGS)
    if not found:
        return None
    cols, rows = pattern
    grid = corners.reshape(rows, cols, 2)
    # The search window must stay inside one square, or the refinement jumps to a neighbouring corner.
    step = Board(path, (grey.shape[1], grey.shape[0]), grid).mean_step_px
    half = int(np.clip(step / 4, 2, 11))
    refined = cv2.cornerSubPix(grey, corners, (half, half), (-1, -1), _SUBPIX)
    return Board(path, (grey.shape[1], grey.shape[0]), refined.reshape(rows, cols, 2))


def measure_scale(
    folder: Path, pattern: tuple[int, int], square_mm: float, distortion: bool
) -> dict[str, Any]:
    """The scale from every board image in ``folder``, with the per-image values behind it."""
    paths = images(folder)
    if not paths:
        raise CalibrationError(f"no image in {folder}")
    found = {path: find_board(path, pattern) for path in paths}
    boards = [board for board in found.values() if board is not None]
    if not boards:
        raise CalibrationError(
            f"no {pattern[0]}x{pattern[1]} checkerboard found in any of the {len(paths)} images in {folder}: "
            "check that the pattern counts inner corners (squares minus one per side) and that the whole "
            "board is visible"
        )
    per_image = [square_mm / board.mean_step_px for board in boards]
    result: dict[str, Any] = {
        "mm_per_px": float(np.mean(per_image)),
        "px_per_mm": float(np.mean([1 / value for value in per_image])),
        "spread_mm_per_px": float(np.std(per_image)),
        "pattern": list(pattern),
        "square_mm": square_mm,
        "images": [{"image": str(b.image), "mm_per_px": v} for b, v in zip(boards, per_image, strict=True)],
        "no_board": [str(path) for path, board in found.items() if board is None],
    }
    if distortion:
        result["distortion"] = _calibrate_camera(boards, pattern, square_mm)
    return result


def _calibrate_camera(boards: list[Board], pattern: tuple[int, int], square_mm: float) -> dict[str, Any]:
    sizes = {board.size for board in boards}
    if len(sizes) > 1:
        raise CalibrationError(f"--distortion needs images of one size; found {sorted(sizes)}")
    cols, rows = pattern
    grid = np.zeros((rows * cols, 3), np.float32)
    grid[:, :2] = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2) * square_mm
    image_points = [board.corners.reshape(-1, 1, 2).astype(np.float32) for board in boards]
    rms, matrix, coefficients, _, _ = cv2.calibrateCamera(
        [grid] * len(boards), image_points, sizes.pop(), None, None
    )
    return {
        "rms_px": float(rms),
        "image_size": list(boards[0].size),
        "camera_matrix": matrix.tolist(),
        "dist_coeffs": coefficients.ravel().tolist(),
    }
