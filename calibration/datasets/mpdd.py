"""MPDD (metal parts, Jezek et al. 2021): distributed in the MVTec AD layout, names and mask suffix included.

    <root>/<category>/test/<defect>/NNN.png
    <root>/<category>/ground_truth/<defect>/NNN_mask.png

A kind of its own only so that results and caches keep the two benchmarks apart.
"""

from __future__ import annotations

from calibration.datasets.mvtec import MVTecLoader


class MPDDLoader(MVTecLoader):
    kind = "mpdd"
