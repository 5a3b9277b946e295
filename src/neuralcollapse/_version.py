"""The package version, in a module of its own: every module that records it imports it
from here, never from the package itself (whose ``__init__`` names every submodule)."""

__version__ = "0.1.0"
