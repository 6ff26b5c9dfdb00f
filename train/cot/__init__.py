"""Indus-CoT: tool-integrated inspection trajectories for SFT (IndusAgent, section 2.2).

- ``teacher``: who writes a trajectory (`Teacher`; `ProgrammaticTeacher` writes them from the labels).
- ``model_teacher``: `ModelTeacher`, a model in the station's agent loop, curated with retries and an
  optional LLM-as-judge (`Judge`).
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
from train.cot.model_teacher import Judge, ModelTeacher, TeacherRejected, TeacherUnavailable
from train.cot.teacher import Attempt, ProgrammaticTeacher, SampleOutcome, Teacher, defect_box

__all__ = [
    "EVALUATION_DATASETS",
    "Attempt",
    "BuildReport",
    "CurationError",
    "Judge",
    "Leak",
    "LeakageFilter",
    "ModelTeacher",
    "ProgrammaticTeacher",
    "SampleOutcome",
    "Teacher",
    "TeacherRejected",
    "TeacherUnavailable",
    "Trajectory",
    "build_trajectories",
    "check_trajectory",
    "defect_box",
    "load_trajectories",
]
