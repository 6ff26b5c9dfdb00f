"""MVTec AD, and every benchmark distributed in its layout (MPDD, our ``indus synth`` output).

    <root>/<category>/test/<defect>/NNN.png             "good" is the defect-free folder
    <root>/<category>/ground_truth/<defect>/NNN_mask.png

The same tree with other folder names serves DTD-Synthetic and MVTec AD 2 (see ``dtd.py``, ``mvtec2.py``),
which is why the folder names are class attributes rather than literals.
"""

from __future__ import annotations

from pathlib import Path

from calibration.datasets.base import GOOD, DatasetLoader, Sample
from calibration.datasets.files import by_stem, expected_names, find_mask, images, subdirs


class SplitTreeLoader(DatasetLoader):
    """``<category>/<split>/<defect>/`` image folders with masks in a parallel ``ground_truth`` tree.

    A root that is itself one category folder (it holds ``<split>/``) is read as that category, so both
    ``mvtec:/data/mvtec`` and ``mvtec:/data/mvtec/bottle`` work.

    Masks: a category without a ground-truth folder at all is read without masks (copies distributed
    without them, like the sample in shared/realdata); once the folder exists, every defective image must
    have its mask, because a missing one means an incomplete download, not a dataset without masks.
    """

    split = "test"
    # Ground-truth folder relative to the category folder.
    ground_truth = "ground_truth"
    # Mask file names over the image stem, tried in order, any image extension.
    mask_names: tuple[str, ...] = ("{stem}_mask",)

    def categories(self) -> list[str]:
        if (self.root / self.split).is_dir():
            return [self.root.name]
        return [d.name for d in subdirs(self.root) if (d / self.split).is_dir()]

    def _load(self, category: str) -> list[Sample]:
        folder = self.root if (self.root / self.split).is_dir() else self.root / category
        split = folder / self.split
        truth = folder / self.ground_truth
        samples = []
        for defect_dir in subdirs(split):
            if defect_dir == truth:
                continue
            defect = defect_dir.name
            masks = by_stem(images(truth / defect)) if defect != GOOD and truth.is_dir() else None
            samples += [
                Sample(
                    image=image,
                    category=category,
                    label=int(defect != GOOD),
                    defect=defect,
                    mask=None if masks is None else self._mask(masks, truth / defect, image),
                    dataset=self.kind,
                )
                for image in images(defect_dir)
            ]
        if not samples:
            raise self.layout_error(f"{split} holds no <defect>/ folder with images")
        return samples

    def _mask(self, masks: dict[str, Path], folder: Path, image: Path) -> Path:
        found = find_mask(masks, image.stem, self.mask_names)
        if found is None:
            raise self.layout_error(
                f"no mask for {image}: looked for {expected_names(folder, image.stem, self.mask_names)}"
            )
        return found


class MVTecLoader(SplitTreeLoader):
    kind = "mvtec"
    layout = (
        "<root>/<category>/test/<defect>/*.png with masks <root>/<category>/ground_truth/<defect>/*_mask.png"
    )
    none_found = "found no category folder with a test/ directory"


class SynthLoader(MVTecLoader):
    """``indus synth`` output: MVTec AD layout, kept apart so results never mix with the real benchmark."""

    kind = "synth"
