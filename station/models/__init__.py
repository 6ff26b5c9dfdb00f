"""Models shipped inside the package: the demo model, trained by `indus train demo` (see demo/README.md).

Kept free of heavy imports: `load_backend` resolves the name ``demo`` through here.
"""

from __future__ import annotations

from pathlib import Path

DEMO_MODEL_DIR = Path(__file__).resolve().parent / "demo"


def shipped_demo_model() -> Path | None:
    """The shipped demo model's directory, or None in a checkout that does not carry it."""
    return DEMO_MODEL_DIR if (DEMO_MODEL_DIR / "model.safetensors").is_file() else None


def resolve_model(name: str) -> str:
    """``demo`` names the shipped demo model (`--model demo`); any other name is returned as given."""
    if name != "demo":
        return name
    path = shipped_demo_model()
    if path is None:
        raise FileNotFoundError(f"no demo model in {DEMO_MODEL_DIR}: build it with `indus train demo --ship`")
    return str(path)
