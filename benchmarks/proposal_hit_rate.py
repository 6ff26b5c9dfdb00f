"""How often the unsupervised region proposal lands on a real defect, against boxes placed at random.

A proposal is only worth its milliseconds if it points the model at the defect more often than chance.
Chance depends heavily on box size (a large box next to a large mask hits almost anywhere), so the
baseline re-uses the exact width and height of every proposed box and only draws its position.

Hit (per defective image with a mask): at least one of the top-k boxes holds at least half of
min(mask area, box area) as defect pixels. Images come from ``../shared/realdata`` (see its README);
they are read in place and never copied.

Two more columns keep the headline honest: ``top-1`` (the best box alone, which is what the crop tool
falls back to) and ``centre`` (one ``max_area`` box in the middle of the frame, no image analysis at
all): benchmark parts are centred in the field of view, so a centred box is already far better than a
random one, and a proposal is only informative where it does better than that.

    python benchmarks/proposal_hit_rate.py [--realdata PATH] [--k 3] [--max-area 0.0625] [--by-label]
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a plain script from anywhere, without installing the project
    sys.path.insert(0, str(REPO))

from tools.image import load_image  # noqa: E402
from tools.proposal import propose_regions  # noqa: E402

DEFAULT_REALDATA = REPO.parent / "shared" / "realdata"


@dataclass(frozen=True)
class Case:
    """One defective image and the file of its ground-truth mask (same size, non-zero = defect)."""

    dataset: str
    category: str
    label: str
    image: Path
    mask: Path

    @property
    def group(self) -> str:
        return f"{self.dataset}/{self.category}"


@dataclass(frozen=True)
class CaseResult:
    case: Case
    hit: bool  # any of the top-k proposals
    top1_hit: bool
    random_hit_rate: float  # expected, for random boxes of the proposals' sizes
    centre_hit: bool  # one max_area box at the frame centre


def load_cases(realdata: Path) -> list[Case]:
    """Defective images that come with a non-empty mask, in manifest order."""
    with (realdata / "manifest.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        Case(r["dataset"], r["category"], r["label"], realdata / r["image"], realdata / r["mask"])
        for r in rows
        if r["is_defect"] == "1" and r["mask"] and int(r["mask_pixels"] or 0) > 0
    ]


def load_mask(path: Path) -> np.ndarray:
    """Boolean mask: any non-zero value is defect (MVTec 3D-AD codes defect classes as 253/254/255).

    Read unchanged rather than through ``load_image``, which would shift a 16-bit mask's small class
    values down to zero.
    """
    mask = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise ValueError(f"cannot decode mask {path}")
    return (mask.max(axis=2) if mask.ndim == 3 else mask) > 0


def _box_sums(integral: np.ndarray, x1, y1, x2, y2):  # ints or arrays of them
    return integral[y2, x2] - integral[y1, x2] - integral[y2, x1] + integral[y1, x1]


def box_hits(mask: np.ndarray, boxes_px: Sequence[Sequence[int]]) -> bool:
    """Whether any box holds at least half of min(mask area, box area) as defect pixels."""
    integral = _integral(mask)
    total = int(integral[-1, -1])
    for x1, y1, x2, y2 in boxes_px:
        inside = int(_box_sums(integral, x1, y1, x2, y2))
        if inside > 0 and 2 * inside >= min(total, (x2 - x1) * (y2 - y1)):
            return True
    return False


def centre_box(width: int, height: int, max_area: float) -> tuple[int, int, int, int]:
    """The largest box of the frame's aspect ratio within ``max_area``, centred."""
    side = max_area**0.5
    w, h = max(1, int(width * side)), max(1, int(height * side))
    x1, y1 = (width - w) // 2, (height - h) // 2
    return x1, y1, x1 + w, y1 + h


def random_hit_rate(
    mask: np.ndarray, sizes: Iterable[tuple[int, int]], draws: int, rng: np.random.Generator
) -> float:
    """Expected hit rate of boxes with the given (w, h) placed uniformly at random, over ``draws`` sets."""
    integral = _integral(mask)
    total = int(integral[-1, -1])
    h, w = mask.shape
    hit = np.zeros(draws, dtype=bool)
    for bw, bh in sizes:
        x1 = rng.integers(0, w - bw + 1, size=draws)
        y1 = rng.integers(0, h - bh + 1, size=draws)
        inside = _box_sums(integral, x1, y1, x1 + bw, y1 + bh)
        hit |= (inside > 0) & (2 * inside >= min(total, bw * bh))
    return float(hit.mean())


def _integral(mask: np.ndarray) -> np.ndarray:
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    integral[1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1)
    return integral


def evaluate(
    cases: Sequence[Case], k: int = 3, max_area: float = 1 / 16, draws: int = 200, seed: int = 0
) -> list[CaseResult]:
    """Proposal hit and random baseline per case; seeded per case so a subset gives the same numbers."""
    results = []
    for i, case in enumerate(cases):
        image = load_image(case.image)
        mask = load_mask(case.mask)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"mask {case.mask} is {mask.shape}, image is {image.shape[:2]}")
        boxes = [p.bbox_px for p in propose_regions(image, k=k, max_area=max_area)]
        sizes = [(x2 - x1, y2 - y1) for x1, y1, x2, y2 in boxes]
        rng = np.random.default_rng([seed, i])
        h, w = mask.shape
        results.append(
            CaseResult(
                case,
                hit=box_hits(mask, boxes),
                top1_hit=box_hits(mask, boxes[:1]),
                random_hit_rate=random_hit_rate(mask, sizes, draws, rng),
                centre_hit=box_hits(mask, [centre_box(w, h, max_area)]),
            )
        )
    return results


@dataclass(frozen=True)
class Row:
    group: str
    images: int
    hit: float
    top1: float
    random: float
    centre: float

    @property
    def ratio(self) -> float:
        return self.hit / self.random if self.random > 0 else float("inf")


def summarise(results: Sequence[CaseResult], by_label: bool = False) -> list[Row]:
    """One row per dataset/category (and defect type with ``by_label``), then an overall row."""
    groups: dict[str, list[CaseResult]] = {}
    for r in results:
        key = f"{r.case.group}/{r.case.label}" if by_label else r.case.group
        groups.setdefault(key, []).append(r)
    groups["overall"] = list(results)
    return [
        Row(
            name,
            len(rs),
            hit=float(np.mean([r.hit for r in rs])),
            top1=float(np.mean([r.top1_hit for r in rs])),
            random=float(np.mean([r.random_hit_rate for r in rs])),
            centre=float(np.mean([r.centre_hit for r in rs])),
        )
        for name, rs in groups.items()
    ]


def format_table(rows: Sequence[Row], k: int) -> str:
    width = max(len("group"), *(len(r.group) for r in rows))
    lines = [f"{'group':<{width}}  images  top-{k:<2}  random  ratio   top-1  centre"]
    for r in rows:
        lines.append(
            f"{r.group:<{width}}  {r.images:6d}  {r.hit:6.1%}  {r.random:6.1%}  {r.ratio:4.1f}x"
            f"  {r.top1:6.1%}  {r.centre:6.1%}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--realdata", type=Path, default=DEFAULT_REALDATA)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--max-area", type=float, default=1 / 16)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--by-label", action="store_true", help="one row per defect type instead of per category"
    )
    args = parser.parse_args(argv)
    if not (args.realdata / "manifest.csv").is_file():
        print(
            f"no benchmark images at {args.realdata} (expected manifest.csv there); see --realdata",
            file=sys.stderr,
        )
        return 2
    cases = load_cases(args.realdata)
    if not cases:
        print(f"no defective images with masks listed in {args.realdata / 'manifest.csv'}", file=sys.stderr)
        return 2
    results = evaluate(cases, k=args.k, max_area=args.max_area, draws=args.draws, seed=args.seed)
    print(format_table(summarise(results, by_label=args.by_label), args.k))
    return 0


if __name__ == "__main__":
    sys.exit(main())
