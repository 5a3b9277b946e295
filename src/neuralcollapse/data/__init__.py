"""Data: long-tailed profiles and sampling, real dataset formats, synthetic mixtures and the
device-resident loader.

Modules: :mod:`.longtail` (class counts, subsets, shot groups, samplers), :mod:`.sources`
(CIFAR archives, digits, image folders, list files), :mod:`.synthetic` (Gaussian mixtures,
flat and hierarchical), :mod:`.loaders` (device-resident batches, crop/flip, mixup, cutmix),
:mod:`.formats` (MNIST, Fashion-MNIST, SVHN, STL-10, CUB-200-2011, FGVC-Aircraft and
iNaturalist in their official formats), :mod:`.augment` (batched random-resized and centre
crops), :mod:`.files` (safe reading: sizes, paths under the data root, archives) and
:mod:`.datasets` (what a registered data set is given and declares).

Every data set a run can name (``data.name``) is one function registered with
:func:`neuralcollapse.registry.register_dataset` beside its loader; importing this package
registers the built-in ones (digits, mnist5k, cifar10, cifar100, image_folder, list_file
in :mod:`.sources`; gaussian, hierarchical in :mod:`.synthetic`; the official releases in
:mod:`.formats`).

Importing this package needs only the core dependencies: scikit-learn (digits), Pillow
(image files) and scipy (SVHN's .mat files) are imported by the functions that use them,
and name their extra when missing.
"""

from __future__ import annotations

from .augment import center_crop, color_jitter, random_resized_crop
from .datasets import DataRequest, DatasetTraits, dataset_traits
from .files import DataFormatError, confined_path
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
    original_worker_errors,
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
    "DataRequest",
    "DataSplit",
    "DatasetTraits",
    "DeviceLoader",
    "ImageFiles",
    "ImageFolderDataset",
    "LabeledImages",
    "ListFileDataset",
    "MixedBatch",
    "Mixture",
    "ShotGroups",
    "center_crop",
    "color_jitter",
    "channel_stats",
    "class_counts",
    "class_sampling_probs",
    "confined_path",
    "cutmix",
    "dataset_traits",
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
    "original_worker_errors",
    "random_crop_flip",
    "random_resized_crop",
    "read_idx",
    "shot_groups",
    "shot_groups_by_index",
]
