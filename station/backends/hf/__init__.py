"""The hf backend: Qwen-VL checkpoints on transformers + torch, with the KV cache kept across tool rounds.

Importing this package imports torch and transformers; nothing else in the station does, so the station runs
without them when another backend is configured.
"""

from station.backends.hf.backend import HFBackend
from station.backends.hf.session import HFSession

__all__ = ["HFBackend", "HFSession"]
