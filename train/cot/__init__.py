"""Indus-CoT: tool-integrated inspection trajectories for SFT (IndusAgent, section 2.2).

- ``teacher``: who writes a trajectory (`Teacher`; `ProgrammaticTeacher` writes them from the labels).
- ``leakage``: keeps the evaluation benchmarks' categories out of the training set.
- ``dataset``: builds, curates and stores a set (`build_trajectories`), reads it back (`load_trajectories`).
"""

from train.cot.dataset import (
    BuildReport,
    CurationError,
    Trajectory,
    build_trajectories,
    check_trajectory,
    load_trajectories,
)
from train.cot.leakage import EVALUATION_DATASETS, Leak, LeakageFilter
from train.cot.teacher import ProgrammaticTeacher, Teacher, defect_box

__all__ = [
    "EVALUATION_DATASETS",
    "BuildReport",
    "CurationError",
    "Leak",
    "LeakageFilter",
    "ProgrammaticTeacher",
    "Teacher",
    "Trajectory",
    "build_trajectories",
    "check_trajectory",
    "defect_box",
    "load_trajectories",
]
