"""GGUF export of Qwen3-VL (text model + mmproj) for llama.cpp / llama-cpp-python."""

from export.gguf.exporter import ConverterNotFound, export_gguf, fetch_converter, find_converter

__all__ = ["ConverterNotFound", "export_gguf", "fetch_converter", "find_converter"]
