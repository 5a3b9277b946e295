"""Data: long-tailed profiles and sampling, real dataset formats, synthetic mixtures and the
device-resident loader.

Modules: :mod:`.longtail` (class counts, subsets, shot groups, samplers), :mod:`.sources`
(CIFAR archives, digits, image folders, list files), :mod:`.synthetic` (Gaussian mixtures,
flat and hierarchical), :mod:`.loaders` (device-resident batches, crop/flip, mixup, cutmix).

Importing this package needs only the core dependencies: scikit-learn (digits) and Pillow
(image files) are imported by the functions that use them, and name their extra when
missing.
"""

from __future__ import annotations

from .loaders import (
    DeviceLoader,
    MixedBatch,
    channel_stats,
    cutmix,
    make_dataloader,
    mixup,
    normalize,
    random_crop_flip,
)
from .longtail import (
    PROFILES,
    SAMPLINGS,
    Y22_CIFAR100_BOUNDARIES,
    ClassSampler,
    ShotGroups,
    class_counts,
    class_sampling_probs,
    epoch_generator,
    epoch_indices,
    long_tailed_indices,
    long_tailed_subset,
    shot_groups,
    shot_groups_by_index,
)
from .sources import (
    CIFAR_ARCHIVES,
    IMAGE_EXTENSIONS,
    DataFormatError,
    DataSplit,
    ImageFolderDataset,
    LabeledImages,
    ListFileDataset,
    decode_image,
    load_cifar,
    load_digits,
    load_mnist5k,
)
from .synthetic import Mixture, gaussian_mixture, hierarchical_mixture

__all__ = [
    "CIFAR_ARCHIVES",
    "IMAGE_EXTENSIONS",
    "PROFILES",
    "SAMPLINGS",
    "Y22_CIFAR100_BOUNDARIES",
    "ClassSampler",
    "DataFormatError",
    "DataSplit",
    "DeviceLoader",
    "ImageFolderDataset",
    "LabeledImages",
    "ListFileDataset",
    "MixedBatch",
    "Mixture",
    "ShotGroups",
    "channel_stats",
    "class_counts",
    "class_sampling_probs",
    "cutmix",
    "decode_image",
    "epoch_generator",
    "epoch_indices",
    "gaussian_mixture",
    "hierarchical_mixture",
    "load_cifar",
    "load_digits",
    "load_mnist5k",
    "long_tailed_indices",
    "long_tailed_subset",
    "make_dataloader",
    "mixup",
    "normalize",
    "random_crop_flip",
    "shot_groups",
    "shot_groups_by_index",
]
