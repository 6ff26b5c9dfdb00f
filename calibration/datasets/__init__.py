"""Dataset loaders for re-validation, one module per dataset behind `base.DatasetLoader`."""

from calibration.datasets.base import GOOD, DatasetError, DatasetLoader, Sample

__all__ = ["GOOD", "DatasetError", "DatasetLoader", "Sample"]
