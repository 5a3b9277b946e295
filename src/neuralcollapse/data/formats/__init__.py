"""Readers for the papers' data sets, each in the format its official release ships.

===============  ==========================================  ==================================
data set         official files read                        returns
===============  ==========================================  ==================================
MNIST            IDX ``*-ubyte`` (raw or ``.gz``)            LabeledImages uint8 (N, 1, 28, 28)
Fashion-MNIST    IDX ``*-ubyte`` (raw or ``.gz``)            LabeledImages uint8 (N, 1, 28, 28)
SVHN             ``<split>_32x32.mat`` (scipy)               LabeledImages uint8 (N, 3, 32, 32)
STL-10           ``stl10_binary/`` (or its ``.tar.gz``)      LabeledImages uint8 (N, 3, 96, 96)
CUB-200-2011     ``CUB_200_2011/`` text files + images       ImageFiles (decoded on access)
FGVC-Aircraft    ``data/images_<level>_<split>.txt`` + JPEG  ImageFiles (decoded on access)
iNaturalist      ``<split>2019.json`` + JPEG                 ImageFiles (decoded on access)
===============  ==========================================  ==================================

Nothing is converted and nothing is downloaded unless asked (``download=True`` where the
files are public). :class:`ImageFiles` sets decode into memory with ``to_memory()``.
"""

from __future__ import annotations

from ._common import RESIZE_MODES, ImageFiles, materialize
from .aircraft import (
    AIRCRAFT_LEVELS,
    AIRCRAFT_SPLITS,
    fgvc_aircraft_hierarchy,
    load_fgvc_aircraft,
)
from .cub import load_cub
from .inaturalist import INATURALIST_RANKS, inaturalist_hierarchy, load_inaturalist
from .mnist import FASHION_MNIST_CLASSES, load_mnist, read_idx
from .stl10 import load_stl10
from .svhn import SVHN_SPLITS, load_svhn

__all__ = [
    "AIRCRAFT_LEVELS",
    "AIRCRAFT_SPLITS",
    "FASHION_MNIST_CLASSES",
    "INATURALIST_RANKS",
    "RESIZE_MODES",
    "SVHN_SPLITS",
    "ImageFiles",
    "fgvc_aircraft_hierarchy",
    "inaturalist_hierarchy",
    "load_cub",
    "load_fgvc_aircraft",
    "load_inaturalist",
    "load_mnist",
    "load_stl10",
    "load_svhn",
    "materialize",
    "read_idx",
]
