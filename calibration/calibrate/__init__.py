"""Calibration of a station from its own data: the decision threshold from a validation run, the pixel
scale from checkerboard images, and normalcy priors measured on known-good parts (``indus calibrate``)."""


class CalibrationError(ValueError):
    """Calibration cannot produce a trustworthy value from what it was given; the message says why."""
