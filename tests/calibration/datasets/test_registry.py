"""`open_dataset`: KIND:PATH specs, and the errors a user sees for a wrong one."""

from __future__ import annotations

import pytest

from calibration.datasets import LOADERS, DatasetError, open_dataset


def test_every_kind_is_registered_under_its_own_name() -> None:
    assert list(LOADERS) == [
        "mvtec",
        "synth",
        "mpdd",
        "visa",
        "dtd",
        "ksdd",
        "sdd",
        "ksdd2",
        "realiad",
        "mvtec2",
        "folder",
        "audit",
    ]
    assert all(loader.kind == kind for kind, loader in LOADERS.items())


def test_spec_errors(tree) -> None:
    tree.image("bottle/test/good/000.png")
    known = "known kinds: mvtec, synth, mpdd, visa, dtd, ksdd, sdd, ksdd2, realiad, mvtec2, folder"
    with pytest.raises(DatasetError, match=f"unknown kind 'btad'; {known}"):
        open_dataset(f"btad:{tree.root}")
    with pytest.raises(DatasetError, match="expected KIND:PATH with KIND one of mvtec, synth"):
        open_dataset(str(tree.root))
    with pytest.raises(DatasetError, match="expected KIND:PATH"):
        open_dataset("mvtec:")
    with pytest.raises(DatasetError, match=r"^mvtec: .*missing does not exist"):
        open_dataset(f"mvtec:{tree.root / 'missing'}")
    with pytest.raises(DatasetError, match=r"^mvtec: .*000\.png is not a directory"):
        open_dataset(f"mvtec:{tree.root / 'bottle/test/good/000.png'}")
    assert open_dataset(f" MVTec :{tree.root}", ["bottle"]).categories() == ["bottle"]
