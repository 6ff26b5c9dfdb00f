"""The onnx backend: an `export.onnx` directory on onnxruntime (CPU, CUDA or TensorRT), KV cache kept.

Importing this package imports onnxruntime and torch (the processor is torch code).
"""

from station.backends.onnx.backend import GPU_PROVIDERS, OnnxBackend, fit_image
from station.backends.onnx.session import OnnxSession

__all__ = ["GPU_PROVIDERS", "OnnxBackend", "OnnxSession", "fit_image"]
