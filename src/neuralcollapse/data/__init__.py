"""Data: long-tailed profiles and sampling, real dataset formats, synthetic mixtures and the
device-resident loader.

Modules: :mod:`.longtail` (class counts, subsets, shot groups, samplers), :mod:`.sources`
(CIFAR archives, digits, image folders, list files), :mod:`.synthetic` (Gaussian mixtures,
flat and hierarchical), :mod:`.loaders` (device-resident batches, crop/flip, mixup, cutmix),
:mod:`.formats` (MNIST, Fashion-MNIST, SVHN, STL-10, CUB-200-2011, FGVC-Aircraft and
iNaturalist in their official formats), :mod:`.augment` (batched random-resized and centre
crops).

Importing this package needs only the core dependencies: scikit-learn (digits), Pillow
(image files) and scipy (SVHN's .mat files) are imported by the functions that use them,
and name their extra when missing.
"""

from __future__ import annotations

from .augment import center_crop, random_resized_crop
from .formats import (
    FASHION_MNIST_CLASSES,
    ImageFiles,
    fgvc_aircraft_hierarchy,
    inaturalist_hierarchy,
    load_cub,
    load_fgvc_aircraft,
    load_inaturalist,
    load_mnist,
    load_stl10,
    load_svhn,
    materialize,
    read_idx,
)
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
    "FASHION_MNIST_CLASSES",
    "IMAGE_EXTENSIONS",
    "PROFILES",
    "SAMPLINGS",
    "Y22_CIFAR100_BOUNDARIES",
    "ClassSampler",
    "DataFormatError",
    "DataSplit",
    "DeviceLoader",
    "ImageFiles",
    "ImageFolderDataset",
    "LabeledImages",
    "ListFileDataset",
    "MixedBatch",
    "Mixture",
    "ShotGroups",
    "center_crop",
    "channel_stats",
    "class_counts",
    "class_sampling_probs",
    "cutmix",
    "decode_image",
    "epoch_generator",
    "epoch_indices",
    "fgvc_aircraft_hierarchy",
    "gaussian_mixture",
    "hierarchical_mixture",
    "inaturalist_hierarchy",
    "load_cifar",
    "load_cub",
    "load_digits",
    "load_fgvc_aircraft",
    "load_inaturalist",
    "load_mnist",
    "load_mnist5k",
    "load_stl10",
    "load_svhn",
    "long_tailed_indices",
    "long_tailed_subset",
    "make_dataloader",
    "materialize",
    "mixup",
    "normalize",
    "random_crop_flip",
    "random_resized_crop",
    "read_idx",
    "shot_groups",
    "shot_groups_by_index",
]
