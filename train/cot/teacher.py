"""Indus-CoT teachers: who writes a tool-integrated inspection trajectory for a labelled sample.

IndusAgent's teacher is a large model that sees only the query image. Until one is wired in, the
programmatic teacher writes trajectories from the labels instead: enough to bootstrap SFT and to test
the data path end to end. It still runs the real tools of the station on the real image, so every
observation in a trajectory is byte for byte what the agent loop would feed back at inspection time,
and it speaks only through the protocol's own turn types, so every turn parses as the station parses
model output.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from calibration.datasets.base import Sample
from calibration.synth.dataset import META_FILE
from station.protocol import Answer, ToolCall, ToolCalls, opening_messages, tool_message
from station.protocol.turns import think_block
from tools.boxes import expand_px, px_to_rel
from tools.prior import PriorStore
from tools.proposal import propose_regions
from tools.registry import Observation, ToolContext, ToolRegistry
from tools.toolkit import default_registry

Box = tuple[int, int, int, int]

# The answer box is the mask's largest component grown a little, so a model trained on it learns to
# enclose the defect rather than to trace its outline; the minimum side keeps hairline defects boxable.
BOX_PADDING = 0.05
MIN_BOX_SIDE_PX = 4
# Stated confidences: a teacher that knows the label is sure, but not certain, so a logit-calibrated
# model is never pushed to saturate.
DEFECT_CONFIDENCES = (0.9, 0.92, 0.95)
GOOD_CONFIDENCES = (0.05, 0.08, 0.1)
# Defect names (any dataset's spelling) that an enhanced view helps with, by the mode that shows them.
_ENHANCE_HINTS = {
    "clahe": (
        "stain",
        "spot",
        "dirt",
        "contamination",
        "discolo",
        "color",
        "colour",
        "oil",
        "rust",
        "residue",
    ),
    "highpass": ("scratch", "crack", "thread", "fracture", "scuff", "line", "cut", "tear", "abrasion"),
    "edges": ("crack", "fracture", "break", "broken", "chip", "bent"),
}
_GEOMETRIC_DEFECTS = ("missing", "extra", "shifted", "bent", "spacing", "misplaced")
_PURPOSE = {
    "crop": ("zoom into {where} at full resolution", "take a full-resolution crop of {where}"),
    "clahe": ("raise the local contrast to reveal faint stains", "check for low-contrast discolouration"),
    "highpass": ("remove the illumination and keep fine lines", "look for fine scratches in the texture"),
    "edges": ("trace edges for cracks and broken outlines", "check the outlines in a gradient view"),
    "prior": ("recall how a defect-free {product} looks", "check what variation is normal for {product}"),
    "measure": ("measure the spacing of the {items}", "check the gaps between the {items} numerically"),
}

# The terse style: one phrasing per turn and no number a model cannot read off the image or its context.
# A 4 M-parameter LM trained on the rich style mangled proposal boxes it had to guess and the gap lists it
# had to copy (112 of 144 validation parts ended in parse errors); the station's demo model speaks this.
_TERSE = {
    "opening": ("The whole {product} is in view.",),
    "suspicion": ("Something in the {where} area, around {box}, looks irregular.",),
    "nothing": ("Nothing stands out at this scale.",),
    "verdict_defect": ("This is {a} {defect}, outside the acceptable variation: the part is defective.",),
    "verdict_good": ("No deviation beyond normal variation; the {product} is defect-free.",),
    "direct_defect": ("Even at this scale there is {a} {defect} in the {where} area, around {box}.",),
    "direct_good": ("A regular, complete {product}; no region is suspicious enough to call a tool.",),
}
# The rich style: varied phrasing that quotes what the tools return, as a large teacher writes.
_RICH = {
    "opening": (
        "The whole {product} is in view.",
        "First a look at the whole {product}.",
        "Global view of the {product}.",
    ),
    "suspicion": (
        "Around {box} ({where}) the surface does not look like the rest of the part.",
        "Something in the {where} area, around {box}, looks irregular.",
    ),
    "nothing": (
        "Nothing stands out at this scale; the most salient area is around {box} ({where}).",
        "At this resolution the part looks regular; if anything, the {where} area around {box} "
        "deserves a look.",
    ),
    "verdict_defect": (
        "This is {a} {defect} at {box}, outside the acceptable variation: the part is defective.",
        "The evidence agrees on {a} {defect} around {box}; reject the part.",
    ),
    "verdict_good": (
        "Structure and texture are consistent with a defect-free {product}; the part is good.",
        "No deviation beyond normal variation; the {product} is defect-free.",
    ),
    "direct_defect": (
        "The {product} shows {a} {defect} clearly enough at {box} ({where}) that no tool is needed.",
        "Even at this scale there is {a} {defect} in the {where} area, around {box}.",
    ),
    "direct_good": (
        "The {product} looks uniform and complete at this scale, with nothing that needs a closer look.",
        "A regular, complete {product}; no region is suspicious enough to call a tool.",
    ),
}
STYLES = ("rich", "terse")


# Fail-safe reasons that mean a model teacher wrote something the protocol cannot read.
MALFORMED = frozenset({"parse_error", "token_limit"})


@dataclass
class Attempt:
    """One try of a teacher at one sample, and what curation made of it."""

    number: int  # 1-based, in the order tried
    kept: bool  # passed curation (a candidate; the judge may still prefer another)
    code: str | None = None  # why curation rejected it: a fail-safe reason or a curation code
    detail: str | None = None
    hint: str | None = None  # the correction hint this attempt was given (never stored in the trajectory)
    tool_calls: int = 0
    seconds: float = 0.0
    judge_score: float | None = None
    judge_error: str | None = None


@dataclass
class SampleOutcome:
    """Everything curation did for one sample: kept or dropped, after how many attempts, and why."""

    source: str  # the sample's key
    label: int
    defect: str
    attempts: list[Attempt] = field(default_factory=list)
    chosen: int | None = None  # the attempt number whose trajectory was kept
    trajectory_id: str | None = None  # set by the builder once the trajectory is written

    @property
    def kept(self) -> bool:
        return self.chosen is not None

    def to_json(self) -> dict:
        return {**asdict(self), "kept": self.kept}


def summarize(outcomes: list[SampleOutcome]) -> dict:
    """Figures over a build's per-sample outcomes: attempts, retries, drops, rejections, judge scores."""
    attempts = [a for o in outcomes for a in o.attempts]
    rejections: dict[str, int] = {}
    for attempt in attempts:
        if attempt.code is not None:
            rejections[attempt.code] = rejections.get(attempt.code, 0) + 1
    scores = [a.judge_score for a in attempts if a.judge_score is not None]
    chosen = [
        a.judge_score
        for o in outcomes
        for a in o.attempts
        if a.number == o.chosen and a.judge_score is not None
    ]
    return {
        "samples": len(outcomes),
        "attempts": len(attempts),
        "kept_first_try": sum(o.chosen == 1 and not o.attempts[0].code for o in outcomes),
        "retried": sum(any(a.code for a in o.attempts) for o in outcomes),
        "recovered": sum(o.kept and any(a.code for a in o.attempts) for o in outcomes),
        "dropped": sum(not o.kept for o in outcomes),
        "malformed": sum(rejections.get(code, 0) for code in MALFORMED),
        "rejections": dict(sorted(rejections.items())),
        "judge": {
            "scored": len(scores),
            "failed": sum(a.judge_error is not None for a in attempts),
            "mean": sum(scores) / len(scores) if scores else None,
            "mean_kept": sum(chosen) / len(chosen) if chosen else None,
        },
    }


class Teacher(ABC):
    """Writes one inspection trajectory for a labelled sample: protocol chat messages, images as arrays.

    A teacher that curates inside (retries, judging) raises `CurationError` when a sample yields nothing
    worth training on, and leaves what it did in ``last_outcome`` so the builder can report it per sample;
    one that writes in one go leaves it None.
    """

    last_outcome: SampleOutcome | None = None

    @abstractmethod
    def trajectory(self, sample: Sample, rng: np.random.Generator) -> list[dict]:
        """The conversation from the opening messages to the final answer turn."""

    def describe(self) -> dict:
        """What wrote a set, for its build report (a model teacher names its model and judge)."""
        return {"kind": "programmatic"}

    @property
    @abstractmethod
    def tools(self) -> list[dict]:
        """The tool schemas the conversations are written against: SFT must render the same tools block
        that GRPO and the station render, or the trained model never calls a tool."""


def defect_box(mask: np.ndarray) -> Box | None:
    """The answer box (0-1000) of a mask: its largest connected component, slightly padded."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count < 2:
        return None
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = (int(v) for v in stats[largest, :4])
    height, width = mask.shape[:2]
    grown = expand_px((x, y, x + w, y + h), width, height, padding=BOX_PADDING, min_side=MIN_BOX_SIDE_PX)
    return px_to_rel(grown, width, height)


def synth_geometry(sample: Sample) -> dict | None:
    """The geometry `indus synth` recorded for a sample, when the sample comes from its output."""
    if sample.dataset != "synth" or len(sample.image.parents) < 4:
        return None
    root = sample.image.parents[3]
    return _synth_meta(root / META_FILE).get(sample.image.relative_to(root).as_posix())


@cache
def _synth_meta(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8") as rows:
        return {row["path"]: row["geometry"] for row in map(json.loads, rows)}


def measure_items(geometry: dict, size: tuple[int, int], focus_y: float) -> tuple[str, list[Box]] | None:
    """A row of components to measure, as 0-1000 boxes: all pins, or the row of holes nearest ``focus_y``
    (pixels). None when the geometry holds no row of at least three."""
    width, height = size
    if "pins" in geometry:
        boxes, what = geometry["pins"], "pins"
    elif "holes" in geometry:
        holes = geometry["holes"]
        half_pitch = geometry["pitch_px"][1] / 2
        row_y = min((cy for _, cy, _ in holes), key=lambda cy: abs(cy - focus_y))
        row = sorted((h for h in holes if abs(h[1] - row_y) < half_pitch), key=lambda h: h[0])
        boxes, what = [(cx - r, cy - r, cx + r, cy + r) for cx, cy, r in row], "holes"
    else:
        return None
    if len(boxes) < 3:
        return None
    return what, [px_to_rel(box, width, height) for box in boxes]


def enhance_modes(defect: str) -> list[str]:
    name = defect.lower()
    return [mode for mode, hints in _ENHANCE_HINTS.items() if any(h in name for h in hints)]


def _where(box: Box) -> str:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    row = "upper" if cy < 333 else "lower" if cy > 667 else "middle"
    col = "left" if cx < 333 else "right" if cx > 667 else "centre"
    return "central" if (row, col) == ("middle", "centre") else f"{row} {col}"


def _words(name: str) -> str:
    return name.replace("_", " ").replace("-", " ").strip()


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


class ProgrammaticTeacher(Teacher):
    """Trajectories written from the labels, with the real tools run on the real image.

    Tool routing follows the defect: crop on the defect (on the unsupervised proposal for good parts,
    where a box would leak nothing but naming none exercises the crop tool's fallback), enhance for stains
    and line defects, measure where the part's geometry is known, prior when the product has one; a
    share of trajectories answers directly so the model learns that tools are optional.

    ``style="rich"`` varies its phrasing and quotes what the tools return (boxes, gaps), as a large
    teacher would. ``style="terse"`` is for models small enough to train on a CPU: one phrasing per turn,
    good parts crop the tool's own proposal without naming it, enhance works on the stated box or the
    whole part, findings name no numbers, and no measure calls (their item boxes are beyond such a model).
    """

    def __init__(
        self,
        registry: ToolRegistry | None = None,
        priors: PriorStore | None = None,
        *,
        direct_ratio: float = 0.15,
        prior_ratio: float = 0.4,
        max_observation_pixels: int = 512 * 512,
        style: str = "rich",
    ):
        if not 0 <= direct_ratio <= 1 or not 0 <= prior_ratio <= 1:
            raise ValueError("direct_ratio and prior_ratio must lie in [0, 1]")
        if style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
        self.style = style
        self.templates = _TERSE if style == "terse" else _RICH
        self.purposes = {key: p[:1] for key, p in _PURPOSE.items()} if style == "terse" else _PURPOSE
        self.registry = registry or default_registry()
        self.priors = priors if priors is not None else PriorStore.default(embedder="lexical")
        self.direct_ratio = direct_ratio
        self.prior_ratio = prior_ratio
        self.max_observation_pixels = max_observation_pixels

    @property
    def tools(self) -> list[dict]:
        return self.registry.schemas()

    def describe(self) -> dict:
        return {"kind": "programmatic", "style": self.style}

    def trajectory(self, sample: Sample, rng: np.random.Generator) -> list[dict]:
        image = sample.load_image()
        product = sample.category
        mask = sample.load_mask() if sample.label else None
        box = defect_box(mask) if mask is not None else None
        focus = box or propose_regions(image, k=1)[0].bbox
        words = {
            "product": _words(product),
            "defect": _words(sample.defect),
            "a": _article(_words(sample.defect)),
            "box": list(focus),
            "where": _where(focus),
        }
        messages = opening_messages(image, product)
        if rng.random() < self.direct_ratio:
            direct = self.templates["direct_defect" if sample.label else "direct_good"]
            messages.append(self._answer(sample, box, rng, _pick(rng, direct, words)).message())
            return messages

        rounds = self._plan(sample, image, box, focus, rng)
        context = ToolContext(
            frame=image,
            product=product,
            priors=self.priors,
            max_observation_pixels=self.max_observation_pixels,
        )
        glance = _pick(rng, self.templates["suspicion" if sample.label else "nothing"], words)
        findings: list[str] = []
        for index, (calls, items) in enumerate(rounds):
            purposes = "; ".join(self._purpose(call, rng, words, items) for call in calls)
            opening = _pick(rng, self.templates["opening"], words)
            lead = f"{opening} {glance}" if index == 0 else " ".join(findings[-2:])
            turn = ToolCalls(tuple(calls), content=think_block(f"{lead} Next: {purposes}."))
            messages.append(turn.message())
            for call in calls:
                observation = self.registry.call(call.name, call.arguments, context)
                messages.append(tool_message(observation))
                findings.append(_finding(observation, sample, terse=self.style == "terse"))
        verdict = _pick(rng, self.templates["verdict_defect" if sample.label else "verdict_good"], words)
        messages.append(self._answer(sample, box, rng, " ".join([*findings, verdict])).message())
        return messages

    def _plan(
        self, sample: Sample, image: np.ndarray, box: Box | None, focus: Box, rng: np.random.Generator
    ) -> list[tuple[list[ToolCall], str]]:
        """The tool calls, split into one or two rounds; each round carries what measure is measuring."""
        terse = self.style == "terse"
        if box:
            crop_args: dict = {"bbox": list(box)}
        else:  # a good part: the proposal, named (rich) or left to the tool to find (both)
            crop_args = {} if terse or rng.random() < 0.3 else {"bbox": list(focus)}
        first = [ToolCall("crop", crop_args)]
        later: list[ToolCall] = []
        modes = enhance_modes(sample.defect) if sample.label else ["clahe", "highpass", "edges"]
        if modes and (sample.label or rng.random() < 0.3):
            args: dict = {"mode": str(rng.choice(modes))}
            if (box or not terse) and rng.random() < 0.7:
                args["bbox"] = list(focus)
            later.append(ToolCall("enhance", args))
        geometry = synth_geometry(sample)
        row = None
        if geometry is not None and not terse:
            height, width = image.shape[:2]
            geometric = any(word in sample.defect for word in _GEOMETRIC_DEFECTS)
            if geometric or (not sample.label and rng.random() < 0.5):
                row = measure_items(geometry, (width, height), (focus[1] + focus[3]) / 2000 * height)
        if row is not None:
            later.append(ToolCall("measure", {"operation": "spacing", "items": [list(b) for b in row[1]]}))
        if sample.category in self.priors and rng.random() < self.prior_ratio:
            first.append(ToolCall("prior", {} if rng.random() < 0.5 else {"name": sample.category}))
        items = row[0] if row else "components"
        if later and rng.random() < 0.5:
            return [(first, items), (later, items)]
        return [([*first, *later], items)]

    def _purpose(self, call: ToolCall, rng: np.random.Generator, words: dict, items: str) -> str:
        key = call.arguments.get("mode", "clahe") if call.name == "enhance" else call.name
        where = (
            f"the region {list(call.arguments['bbox'])}" if "bbox" in call.arguments else "the best region"
        )
        return _pick(rng, self.purposes[key], {**words, "where": where, "items": items})

    def _answer(self, sample: Sample, box: Box | None, rng: np.random.Generator, reasoning: str) -> Answer:
        confidences = DEFECT_CONFIDENCES if sample.label else GOOD_CONFIDENCES
        return Answer(
            anomaly=bool(sample.label),
            type=sample.defect if sample.label else None,
            bbox=box,
            confidence=float(rng.choice(confidences)),
            content=think_block(reasoning),
        )


def _pick(rng: np.random.Generator, templates: tuple[str, ...], words: dict) -> str:
    return templates[int(rng.integers(len(templates)))].format(**words)


def _finding(observation: Observation, sample: Sample, terse: bool = False) -> str:
    """What the teacher reads off a tool's real output: numbers are quoted (terse: none), images described
    by the label."""
    data = observation.data
    seen = _words(sample.defect) if sample.label else None
    if observation.tool == "crop":
        shows = f"shows the {seen}" if seen else "shows regular structure"
        return f"The crop {shows}." if terse else f"The crop of {data['bbox']} {shows}."
    if observation.tool == "enhance":
        shows = f"makes the {seen} stand out" if seen else "shows no local break"
        return f"The {data['mode']} view {shows}."
    if observation.tool == "measure":
        irregular = data["irregular_gaps"]
        gaps = f"gaps {data['gaps_px']} px (median {data['median_gap_px']})"
        verdict = f"irregular gaps at {irregular}" if irregular else "no irregular gap"
        return f"Spacing: {gaps}, {verdict}, largest offset from the row {data['max_offset_from_row_px']} px."
    if terse:
        return f"The prior of {data['name']} describes a defect-free part."
    structure = next(
        (line for line in data["prior"].splitlines() if line.startswith("Structure: ")), data["prior"]
    )
    return f"The prior of {data['name']} says: {structure.removeprefix('Structure: ')}"
