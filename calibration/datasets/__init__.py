"""Dataset loaders for re-validation, one module per dataset behind `base.DatasetLoader`.

A dataset is named on the command line as ``KIND:PATH`` (``mvtec:/data/mvtec_anomaly_detection``); the
kind says which layout to read, since several benchmarks share folder names but not their meaning.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from calibration.datasets.audit import AuditLoader
from calibration.datasets.base import GOOD, DatasetError, DatasetLoader, Sample
from calibration.datasets.dtd import DTDLoader
from calibration.datasets.folder import FolderLoader
from calibration.datasets.kolektor import KolektorSDDLoader, SDDLoader
from calibration.datasets.kolektorsdd2 import KolektorSDD2Loader
from calibration.datasets.mpdd import MPDDLoader
from calibration.datasets.mvtec import MVTecLoader, SynthLoader
from calibration.datasets.mvtec2 import MVTec2Loader
from calibration.datasets.realiad import RealIADLoader
from calibration.datasets.visa import VisALoader

LOADERS: dict[str, type[DatasetLoader]] = {
    "mvtec": MVTecLoader,
    "synth": SynthLoader,
    "mpdd": MPDDLoader,
    "visa": VisALoader,
    "dtd": DTDLoader,
    "ksdd": KolektorSDDLoader,
    "sdd": SDDLoader,
    "ksdd2": KolektorSDD2Loader,
    "realiad": RealIADLoader,
    "mvtec2": MVTec2Loader,
    "folder": FolderLoader,
    "audit": AuditLoader,
}


def open_dataset(spec: str, categories: Sequence[str] | None = None) -> DatasetLoader:
    """Open ``KIND:PATH``; the layout and the category selection are checked here, before any work."""
    kind, colon, path = spec.partition(":")
    kind = kind.strip().lower()
    known = ", ".join(LOADERS)
    if not colon or not path.strip():
        raise DatasetError(f"dataset {spec!r}: expected KIND:PATH with KIND one of {known}")
    if kind not in LOADERS:
        raise DatasetError(f"dataset {spec!r}: unknown kind {kind!r}; known kinds: {known}")
    return LOADERS[kind](Path(path.strip()).expanduser(), categories)


__all__ = ["GOOD", "LOADERS", "DatasetError", "DatasetLoader", "Sample", "open_dataset"]
