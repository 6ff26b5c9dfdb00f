"""A product's normalcy prior measured on known-good images, written to a user prior store.

The shipped priors describe products in words; a line's own good parts add numbers the model can compare a
frame against (brightness, contrast, colour, texture, orientation, how much of the frame the part covers)
with their spread across the good images, which is the variation the model must not flag. A product that
already has a prior keeps its hand-written text; a new one gets a short description generated from the
numbers. A few downscaled good images go next to the store file as reference images.
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from calibration.calibrate import CalibrationError
from calibration.datasets.files import images
from tools.image import ImageError, load_image, save_image, to_gray, to_rgb
from tools.prior import Kind, Prior, PriorStore

REFERENCE_SIDE = 256  # long side of a reference image: enough to show the part, cheap to keep


def measure_image(image: np.ndarray) -> dict[str, Any]:
    """One good image's statistics; orientation as degrees counter-clockwise from horizontal."""
    rgb = to_rgb(image)
    grey = to_gray(rgb)
    values = grey.astype(np.float32)
    gx = cv2.Sobel(values, cv2.CV_32F, 1, 0, ksize=3)
    gy = -cv2.Sobel(values, cv2.CV_32F, 0, 1, ksize=3)  # y up, so angles turn counter-clockwise on screen
    jxx, jyy, jxy = float(np.mean(gx * gx)), float(np.mean(gy * gy)), float(np.mean(gx * gy))
    energy = jxx + jyy
    # Structure tensor: the dominant gradient direction; the lines and edges themselves run across it.
    gradient_deg = math.degrees(0.5 * math.atan2(2 * jxy, jxx - jyy))
    _, otsu = cv2.threshold(grey, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    border = np.concatenate([otsu[0], otsu[-1], otsu[:, 0], otsu[:, -1]])
    background = int(border.mean() >= 0.5)  # the Otsu class most of the border belongs to
    return {
        "width_px": grey.shape[1],
        "height_px": grey.shape[0],
        "brightness": float(values.mean()),
        "contrast": float(values.std()),
        "colour_rgb": rgb.reshape(-1, 3).mean(axis=0).tolist(),
        "texture_energy": float(np.abs(cv2.Laplacian(values, cv2.CV_32F)).mean()),
        "edge_density": float((cv2.Canny(grey, 50, 150) > 0).mean()),
        "orientation_deg": (gradient_deg + 90) % 180,
        "orientation_coherence": math.hypot(jxx - jyy, 2 * jxy) / energy if energy else 0.0,
        "foreground_fraction": float((otsu != background).mean()),
    }


def summarize(per_image: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread (standard deviation) of each statistic over the good images, to 4 digits."""
    out: dict[str, Any] = {"good_images": len(per_image)}
    for key in per_image[0]:
        values = np.array([m[key] for m in per_image], dtype=float)
        if key == "orientation_deg":  # an axis, not a direction: 179 and 1 degrees are 2 apart
            out[key] = _axial_stat(values)
        else:
            out[key] = {"mean": _digits(values.mean(axis=0)), "std": _digits(values.std(axis=0))}
    return out


def _axial_stat(degrees: np.ndarray) -> dict[str, float]:
    mean = np.exp(2j * np.radians(degrees)).mean()
    spread = math.degrees(math.sqrt(-2 * math.log(max(abs(mean), 1e-12))) / 2)
    return {"mean": _digits(math.degrees(np.angle(mean)) / 2 % 180), "std": _digits(spread)}


def _digits(value: Any) -> Any:
    return [_digits(v) for v in value] if np.ndim(value) else float(f"{float(value):.4g}")


def describe(measurements: dict[str, Any], kind: Kind) -> dict[str, str]:
    """The prior's text aspects, stating only what the numbers say."""
    stats = {k: v for k, v in measurements.items() if isinstance(v, dict)}
    mean = {k: v["mean"] for k, v in stats.items()}
    std = {k: v["std"] for k, v in stats.items()}
    size = f"{mean['width_px']:.0f}x{mean['height_px']:.0f} px"
    r, g, b = mean["colour_rgb"]
    colour = (
        "grey (no dominant colour)"
        if max(r, g, b) - min(r, g, b) < 12
        else f"RGB about ({r:.0f}, {g:.0f}, {b:.0f})"
    )
    coherence = mean["orientation_coherence"]
    angle = f"{mean['orientation_deg']:.0f} degrees from horizontal"
    if coherence >= 0.5:
        structure = f"Strongly oriented: lines and edges run at about {angle}"
    elif coherence >= 0.2:
        structure = f"Weakly oriented, mostly at about {angle}"
    else:
        structure = "No dominant direction"
    geometry = (
        f"The part covers about {mean['foreground_fraction']:.0%} of a {size} frame (Otsu foreground)."
        if kind == "object"
        else f"A surface filling the {size} frame."
    )
    return {
        "geometry": geometry,
        "texture": f"Mean brightness {mean['brightness']:.0f}/255, contrast (grey std) "
        f"{mean['contrast']:.0f}, colour {colour}; edge density {mean['edge_density']:.1%}, texture energy "
        f"{mean['texture_energy']:.3g}.",
        "structure": f"{structure} (orientation coherence {coherence:.2f}).",
        "acceptable_variation": f"Measured from {measurements['good_images']} good images, which vary by "
        f"{std['brightness']:.1f} grey levels in brightness, {std['foreground_fraction']:.1%} in foreground "
        f"fraction and {std['edge_density']:.1%} in edge density (one standard deviation); differences of "
        "that size are normal.",
    }


def calibrate_prior(
    good: Path, product: str, store: Path, kind: Kind | None, references: int
) -> tuple[Prior, Path, bool]:
    """Measure ``good`` and save the product's prior in the user store ``store``.

    Returns the prior, the store file and whether an existing prior (shipped or user) was refreshed.
    """
    paths = images(good, recursive=True)
    if not paths:
        raise CalibrationError(f"no image in {good}")
    try:
        frames = [load_image(path) for path in paths]
    except ImageError as error:
        raise CalibrationError(str(error)) from None
    measurements = summarize([measure_image(frame) for frame in frames])
    existing = _existing(product, store)
    chosen_kind = kind or (existing.kind if existing else "object")
    picks = np.unique(np.linspace(0, len(paths) - 1, min(references, len(paths))).round().astype(int))
    folder = store.resolve() / "references" / _safe(product)
    shutil.rmtree(folder, ignore_errors=True)  # ours alone: refreshed references replace the old ones
    saved = []
    for number, index in enumerate(picks):
        target = folder / f"{number:02d}_{_safe(paths[index].stem)}.png"
        save_image(target, _downscale(frames[index]))
        saved.append(str(target))
    text = (
        {"name": product, **describe(measurements, chosen_kind)}
        if existing is None
        else existing.model_dump()
    )
    prior = Prior.model_validate(
        {**text, "kind": chosen_kind, "measurements": measurements, "reference_images": saved}
    )
    user = PriorStore(embedder="lexical")
    user.add(prior)
    return prior, user.save_user(store), existing is not None


def _existing(product: str, store: Path) -> Prior | None:
    """The prior the station would use for this product, when it is found by name rather than guessed; a
    merged family view (pcb -> pcb1..pcb4) is no single product's prior to refresh."""
    match = PriorStore.default([store], embedder="lexical").lookup(product)
    if match is None or match.matched_by not in ("exact", "alias", "variant") or match.family:
        return None
    return match.prior


def _downscale(image: np.ndarray) -> np.ndarray:
    scale = REFERENCE_SIDE / max(image.shape[:2])
    if scale >= 1:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name) or "_"
