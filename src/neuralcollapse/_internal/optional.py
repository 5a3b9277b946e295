"""The one way the package imports a package it does not depend on (an extra such as
``wandb``, ``timm``, ``scikit-learn``): import it, or fail with one line naming what needed
it and how to install it."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["extra_install", "optional_import"]


def extra_install(extra: str) -> str:
    """The install line of one of the package's extras."""
    return f"pip install 'neuralcollapse[{extra}]'"


def optional_import(
    module: str,
    *,
    package: str,
    purpose: str,
    install: str,
    error: type[Exception] = ImportError,
) -> ModuleType:
    """Import ``module`` (dotted), or raise ``error`` (ImportError, or e.g. ConfigError
    when a config key asked for it) with the message ``"{purpose} needs the {package}
    package, which is not installed: {install}"``, chained to the original ImportError."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise error(
            f"{purpose} needs the {package} package, which is not installed: {install}"
        ) from err
