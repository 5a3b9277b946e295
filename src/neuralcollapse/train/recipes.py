"""The YAML recipes shipped inside the package (``neuralcollapse/configs/``).

The repository's top-level ``configs/`` is the same folder, so ``--config
configs/digits_lt.yaml`` works from a checkout and ``--config digits_lt`` works anywhere.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_RECIPE", "RECIPE_DIR", "available_recipes", "resolve_config_path"]

RECIPE_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_RECIPE = "digits_lt"


def available_recipes() -> list[str]:
    """Names of the packaged recipes (file stems), sorted."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: str | Path | None) -> Path:
    """A config file path from a path, or from the name of a packaged recipe.

    ``None`` gives the embedded default (``digits_lt``).
    """
    if name_or_path is None:
        name_or_path = DEFAULT_RECIPE
    path = Path(name_or_path)
    if path.is_file():
        return path
    # A bare name ("digits_lt" or "digits_lt.yaml") means a packaged recipe; a path with a
    # folder must exist as given, so a typo never silently picks another file.
    if len(path.parts) == 1:
        packaged = RECIPE_DIR / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
        if packaged.is_file():
            return packaged
    raise FileNotFoundError(
        f"config {str(name_or_path)!r} is neither a file nor a packaged recipe; packaged "
        f"recipes: {', '.join(available_recipes())}"
    )
