"""Writing calibrated values into a product recipe of the station's YAML configuration.

The file is loaded, changed and dumped again (comments and formatting are not kept, every other key and its
order is), after a ``.bak`` copy of the original: an operator can always see or restore what was there.
The recipe is validated before anything is written, so calibration never leaves a config the station
refuses to start with.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from calibration.calibrate import CalibrationError
from station.config import ProductRecipe
from tools.prior import write_atomic


def update_recipe(config: Path, product: str, values: dict[str, Any]) -> list[str]:
    """Set ``values`` in ``products.<product>`` (created if missing); returns one line per change."""
    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
    except OSError as error:
        raise CalibrationError(
            f"cannot read the station config {config}: {error.strerror or error}"
        ) from None
    except yaml.YAMLError as error:
        raise CalibrationError(f"{config} is not valid YAML: {error}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise CalibrationError(f"{config}: expected a mapping of sections (model, products, ...)")
    products = data.get("products") or {}
    recipe = products.get(product) if isinstance(products, dict) else None
    if not isinstance(products, dict) or not isinstance(recipe, dict | None):
        raise CalibrationError(f"{config}: products.{product} must be a mapping of recipe fields")
    changes = [] if recipe is not None else [f"products.{product}: new recipe"]
    recipe = dict(recipe or {})
    for key, value in values.items():
        before = recipe.get(key, f"(unset, default {ProductRecipe.model_fields[key].default})")
        changes.append(f"products.{product}.{key}: {before} -> {value}")
        recipe[key] = value
    try:
        ProductRecipe.model_validate(recipe)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise CalibrationError(f"{config}: products.{product} would be invalid: {problems}") from None
    data["products"] = {**products, product: recipe}
    shutil.copy2(config, config.with_name(config.name + ".bak"))
    write_atomic(config, yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))
    return changes
