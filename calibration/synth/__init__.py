"""Deterministic synthetic industrial parts (textures and objects) with exact defect masks and geometry.

``generate_part`` draws one part in memory (training draws fresh ones every step); ``write_dataset`` and the
``indus synth`` command write a whole set in MVTec AD layout.
"""

from calibration.synth.dataset import write_dataset
from calibration.synth.parts import CATEGORIES, SynthPart, generate_part

__all__ = ["CATEGORIES", "SynthPart", "generate_part", "write_dataset"]
