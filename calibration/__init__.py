"""Calibration data: synthetic parts with exact masks and known geometry, for tests, demos and training."""
