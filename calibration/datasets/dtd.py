"""DTD-Synthetic (Aota et al. 2023): textures from DTD with synthetic defects, in an MVTec-like tree.

    <root>/<category>/test/{good,bad}/NNN.png
    <root>/<category>/ground_truth/bad/NNN.png  or  NNN_mask.png

Public loaders disagree on the mask name and no copy was at hand to settle it, so both are accepted and
the error names both when neither is there.
"""

from __future__ import annotations

from calibration.datasets.mvtec import SplitTreeLoader


class DTDLoader(SplitTreeLoader):
    kind = "dtd"
    layout = "<root>/<category>/test/{good,bad}/*.png with masks <root>/<category>/ground_truth/bad/*.png"
    none_found = "found no texture folder with a test/ directory"
    mask_names = ("{stem}", "{stem}_mask")
