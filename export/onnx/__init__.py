"""ONNX export of Qwen3-VL (three graphs) for `station.backends.onnx`."""

from export.onnx.exporter import export_onnx

__all__ = ["export_onnx"]
