"""MVTec AD 2, public test split: the only one with ground truth (the private splits are scored by MVTec).

    <root>/<category>/test_public/{good,bad}/<id>_<condition>.png
    <root>/<category>/test_public/ground_truth/bad/<id>_<condition>_mask.png

Ground truth sits inside the split folder here, unlike MVTec AD, so it must not be taken for a defect type.
"""

from __future__ import annotations

from calibration.datasets.mvtec import SplitTreeLoader


class MVTec2Loader(SplitTreeLoader):
    kind = "mvtec2"
    split = "test_public"
    ground_truth = "test_public/ground_truth"
    layout = (
        "<root>/<category>/test_public/{good,bad}/*.png with masks "
        "<root>/<category>/test_public/ground_truth/bad/*_mask.png"
    )
    none_found = "found no category folder with a test_public/ directory"
