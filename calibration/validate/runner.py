"""Run the station's own agent loop over a dataset, resumably.

A run lives in one output folder. ``run.json`` records what is being evaluated (dataset, categories,
backend, model, adapter, priors, agent configuration) and its fingerprint; ``results.jsonl`` grows by one
line per finished image. Running again with the same setup continues with the images that have no line
yet and never inspects a finished one twice; a different setup is refused, because mixing verdicts of two
models or two thresholds in one set of figures would be silently wrong. ``restart`` discards the folder's
results instead.

The fingerprint leaves out what does not change a verdict: where the model is served (base URL, device) and
how many images are asked for (``limit``), so a quick look with a limit can be extended by the same command
without it. A local model or adapter counts by its files as well as its path, so new weights written into
the same folder are a new run.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from calibration.datasets import DatasetError, Sample, open_dataset
from calibration.metrics.localization import component_boxes, score_box
from calibration.metrics.summary import flatten, summarize
from calibration.validate.report import write_report
from calibration.validate.results import RESULTS_FILE, Result, ResultLog, read_results, write_results
from station.agent import Agent
from station.agent_config import AgentConfig
from station.backends import Backend
from tools.image import ImageError
from tools.prior import PriorStore

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"
CSV_FILE = "metrics.csv"
REPORT_FILE = "report.html"
OUTPUTS = (RESULTS_FILE, METRICS_FILE, CSV_FILE, REPORT_FILE)


class RunMismatch(Exception):
    """The output folder holds results of a different setup."""


class RunSpec(BaseModel):
    """What a run evaluates; equal specs mean results that may be pooled."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str  # KIND:PATH, the path absolute
    categories: tuple[str, ...] | None = None  # None: every category present
    backend: str
    model: str
    adapter: str | None = None
    # Local model and adapter files (names, sizes, modification times), so retraining into the same folder
    # is a different run; None for a server-side model name.
    model_files: str | None = None
    adapter_files: str | None = None
    priors: tuple[str, ...] = ()  # extra prior folders, on top of the shipped priors
    agent: AgentConfig = AgentConfig()

    @classmethod
    def create(
        cls,
        dataset: str,
        *,
        backend: str,
        model: str,
        categories: tuple[str, ...] | list[str] | None = None,
        adapter: str | None = None,
        priors: tuple[str, ...] | list[str] = (),
        agent: AgentConfig | None = None,
    ) -> RunSpec:
        """A spec with paths made absolute, so the same run started from another folder is the same run
        (sample keys hold image paths, and they must match on resume)."""
        kind, colon, root = dataset.partition(":")
        if colon and root.strip():  # anything else is left for open_dataset to explain
            dataset = f"{kind.strip().lower()}:{_absolute(root.strip())}"
        return cls(
            dataset=dataset,
            categories=tuple(dict.fromkeys(categories)) if categories else None,
            backend=backend,
            model=_absolute(model) if Path(model).exists() else model,
            adapter=_absolute(adapter) if adapter else None,
            model_files=_files_stamp(model),
            adapter_files=_files_stamp(adapter) if adapter else None,
            priors=tuple(_absolute(p) for p in priors),
            agent=agent or AgentConfig(),
        )

    @property
    def fingerprint(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().resolve())


def _files_stamp(path: str) -> str | None:
    """A hash of the names, sizes and modification times of the files at ``path``: cheap next to reading
    gigabytes of weights, and it changes whenever training writes new ones. None where nothing is there."""
    root = Path(path).expanduser()
    if not root.exists():
        return None
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        digest.update(f"{file.relative_to(root.parent)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


@dataclass
class Inspection:
    results: list[Result]  # one per sample, in dataset order
    inspected: int  # images inspected by this call; the rest came from results.jsonl


class ValidationRun:
    """An output folder bound to one spec. Opening it checks the spec against the folder before any model
    is loaded, so a wrong rerun fails in a second, not after minutes of loading weights.

    `inspect` does the model work (resumably); `report` turns results into metrics.json, metrics.csv and
    report.html. They are separate so that figures can be redone without a model, and a run stopped early
    writes no figures that look final.
    """

    def __init__(self, out: str | Path, spec: RunSpec, *, restart: bool = False):
        self.out = Path(out)
        self.spec = spec
        self.dataset = open_dataset(spec.dataset, spec.categories)
        self.out.mkdir(parents=True, exist_ok=True)
        run_file = self.out / RUN_FILE
        recorded = None
        if restart:
            for name in (RUN_FILE, *OUTPUTS):
                (self.out / name).unlink(missing_ok=True)
        elif run_file.exists():
            recorded = json.loads(run_file.read_text(encoding="utf-8"))
            _check_same(recorded, spec, self.out)
        elif (self.out / RESULTS_FILE).exists():
            raise RunMismatch(
                f"{self.out} holds {RESULTS_FILE} but no {RUN_FILE}, so what made them is unknown; "
                "use --restart to discard them, or another --out"
            )
        self.info: dict[str, Any] = recorded or {
            "fingerprint": spec.fingerprint,
            "spec": spec.model_dump(mode="json"),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "indus_station": _version(),
        }
        if recorded is None:
            run_file.write_text(json.dumps(self.info, indent=2) + "\n", encoding="utf-8")

    def inspect(self, backend: Backend, *, limit: int | None = None, progress: bool = True) -> Inspection:
        """Inspect every sample that has no result yet; return the results of all of them.

        ``limit`` takes the first N samples in dataset order. On Ctrl-C (KeyboardInterrupt) the image being
        inspected is lost and every finished one is on disk.
        """
        samples = list(itertools.islice(self.dataset.samples(), limit))
        done = self._resume()
        todo = [s for s in samples if s.key not in done]
        agent = Agent(backend, self.spec.agent, priors=PriorStore.default(self.spec.priors))
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeRemainingColumn(),
        )
        try:
            with (
                ResultLog(self.out / RESULTS_FILE) as results_log,
                Progress(*columns, console=Console(stderr=True), disable=not progress) as bar,
            ):
                task = bar.add_task(
                    "validating", total=len(samples), completed=len(samples) - len(todo), status=""
                )
                wrong = fail_safes = 0
                for sample in todo:
                    result = inspect_sample(agent, sample)
                    results_log.append(result)
                    done[result.key] = result
                    wrong += not result.correct
                    fail_safes += result.verdict.fail_safe
                    bar.update(
                        task,
                        advance=1,
                        description=sample.category,
                        status=f"wrong {wrong}  fail-safes {fail_safes}",
                    )
        finally:
            agent.close()
        return Inspection(results=[done[s.key] for s in samples], inspected=len(todo))

    def _resume(self) -> dict[str, Result]:
        """Finished results; a broken line (a kill mid-write) is dropped from the file, so that image runs
        again and the next append starts on a line of its own."""
        path = self.out / RESULTS_FILE
        done, broken = read_results(path)
        if broken or not _ends_with_newline(path):
            log.warning("%s: dropping %d unreadable line(s) and a torn end, if any", path, broken)
            write_results(path, done.values())
        return done

    def report(self, results: list[Result]) -> dict[str, Any]:
        """Write metrics.json, metrics.csv and report.html over ``results``; return the metrics."""
        started = time.perf_counter()
        metrics = {"run": self.info} | summarize(results)
        (self.out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        _write_csv(self.out / CSV_FILE, metrics)
        write_report(self.out / REPORT_FILE, metrics, results)
        log.info("outputs written in %.1f s", time.perf_counter() - started)
        return metrics


def inspect_sample(agent: Agent, sample: Sample) -> Result:
    """The agent's verdict on one sample, with the ground truth and box scores the metrics need."""
    try:
        frame = sample.load_image()
    except (ImageError, DatasetError, OSError) as error:
        verdict = agent.fail_safe("corrupt_frame", str(error), part_id=sample.key, product=sample.category)
    else:
        verdict = agent.inspect(frame, sample.category, part_id=sample.key)
    try:
        mask = sample.load_mask()
    except DatasetError as error:  # one bad mask file must not end a long run; it is scored as unmasked
        log.warning("%s: %s; scored without a mask", sample.key, error)
        mask = None
    gt_boxes = component_boxes(mask) if mask is not None else []
    return Result(
        key=sample.key,
        image=str(sample.image),
        category=sample.category,
        label=sample.label,
        defect=sample.defect,
        mask=None if sample.mask is None else str(sample.mask),
        region=sample.region,
        dataset=sample.dataset,
        gt_boxes=gt_boxes,
        localization=score_box(verdict.bbox, mask, gt_boxes) if gt_boxes and verdict.bbox else None,
        verdict=verdict,
    )


def spec_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{"agent.threshold": (0.5, 0.6), ...}``: what differs between two specs, as dotted paths."""
    old, new = flatten(before), flatten(after)
    return {
        key: (old.get(key), new.get(key))
        for key in dict.fromkeys([*old, *new])
        if old.get(key) != new.get(key)
    }


def _check_same(recorded: dict[str, Any], spec: RunSpec, out: Path) -> None:
    if recorded.get("fingerprint") == spec.fingerprint:
        return
    changes = spec_changes(recorded.get("spec", {}), spec.model_dump(mode="json"))
    listed = "; ".join(f"{key}: {json.dumps(a)} -> {json.dumps(b)}" for key, (a, b) in changes.items())
    raise RunMismatch(
        f"{out} holds results of a different setup ({listed or 'fingerprint differs'}); "
        "rerun with --restart to discard them, or choose another --out"
    )


def _ends_with_newline(path: Path) -> bool:
    """True for an empty or missing file too: only a torn last line needs the file rewritten."""
    if not path.exists() or path.stat().st_size == 0:
        return True
    with path.open("rb") as data:
        data.seek(-1, os.SEEK_END)
        return data.read(1) == b"\n"


def _write_csv(path: Path, metrics: dict[str, Any]) -> None:
    """One row per scope (overall, category mean, each category), one column per flattened figure."""
    rows = [{"scope": "overall", "category": ""} | flatten(metrics["overall"])]
    rows.append({"scope": "category_mean", "category": ""} | flatten(metrics["category_mean"]))
    rows += [
        {"scope": "category", "category": name} | flatten(scope)
        for name, scope in metrics["categories"].items()
    ]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _version() -> str:
    try:
        return version("indus-station")
    except PackageNotFoundError:
        return "unknown"
