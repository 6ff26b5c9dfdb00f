"""The gguf backend: an `export.gguf` directory on llama-cpp-python (CPU, or GPU offload), KV cache kept.

Importing this package imports llama_cpp (the `gguf` extra) and torch (the verdict recorder and the image
resize are the hf backend's).
"""

from station.backends.gguf.backend import GGUFBackend, GGUFTokenizer, ImageBounds
from station.backends.gguf.session import GGUFSession

__all__ = ["GGUFBackend", "GGUFSession", "GGUFTokenizer", "ImageBounds"]
