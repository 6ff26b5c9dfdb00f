"""Write synthetic parts in the MVTec AD layout, so every loader written for the real benchmark reads them.

Every image has its own seed, derived from (run seed, category, split, defect, index) and recorded in the
metadata: any single image can be regenerated alone with
``generate_part(category, defect, size, np.random.default_rng(row["seed"]))``, and adding a category or
raising ``n`` leaves the images already written unchanged.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from calibration.synth.parts import CATEGORIES, MIN_SIZE, generate_part
from tools.image import save_image

META_FILE = "synth_meta.jsonl"


def part_seed(seed: int, category: str, split: str, defect: str, index: int) -> int:
    """The seed of one image; stable across runs, machines and the set of categories asked for."""
    key = zlib.crc32(f"{category}/{split}/{defect}".encode())
    return int(np.random.SeedSequence([seed, key, index]).generate_state(1)[0])


def plan(category: str, n: int) -> Iterator[tuple[str, str, int]]:
    """(split, defect or "good", index within its folder) for one category.

    ``n`` train images, all good; ``n`` test images, half of them (rounded up) good and the rest dealt
    round-robin over the category's defect types.
    """
    for index in range(n):
        yield "train", "good", index
    good = (n + 1) // 2
    for index in range(good):
        yield "test", "good", index
    defects = CATEGORIES[category]
    counts = dict.fromkeys(defects, 0)
    for turn in range(n - good):
        defect = defects[turn % len(defects)]
        yield "test", defect, counts[defect]
        counts[defect] += 1


def check_request(n: int, size: int, categories: Sequence[str]) -> None:
    """Raise ValueError naming the first unusable argument."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if size < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE} px, got {size}")
    if not categories:
        raise ValueError("no categories given")
    unknown = [name for name in categories if name not in CATEGORIES]
    if unknown:
        raise ValueError(f"unknown categories: {', '.join(unknown)}; known: {', '.join(CATEGORIES)}")


def write_dataset(
    out: str | Path, n: int, seed: int, size: int = 256, categories: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Generate and write the dataset under ``out``; returns the metadata rows, also written as JSONL.

    Files of an earlier run in ``out`` are overwritten where the names coincide and otherwise left alone.
    """
    categories = list(dict.fromkeys(categories or CATEGORIES))
    check_request(n, size, categories)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output path is a file: {out}")
    rows = []
    for category in categories:
        for split, defect, index in plan(category, n):
            image_seed = part_seed(seed, category, split, defect, index)
            part = generate_part(category, defect, size, np.random.default_rng(image_seed))
            name = f"{index:03d}"
            image_path = f"{category}/{split}/{defect}/{name}.png"
            save_image(out / image_path, part.image)
            mask_path = None
            if part.defect is not None:
                mask_path = f"{category}/ground_truth/{defect}/{name}_mask.png"
                save_image(out / mask_path, part.mask)
            rows.append(
                {
                    "path": image_path,
                    "category": category,
                    "split": split,
                    "label": part.label,
                    "defect": defect,
                    "mask": mask_path,
                    "size": [size, size],
                    "seed": image_seed,
                    "dataset_seed": seed,
                    "geometry": part.geometry,
                }
            )
    out.mkdir(parents=True, exist_ok=True)
    with (out / META_FILE).open("w", encoding="utf-8") as meta:
        meta.writelines(json.dumps(row) + "\n" for row in rows)
    return rows
