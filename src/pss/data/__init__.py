"""Datasets and loaders: ImageNet-style folders, their archives, Hugging Face datasets, and a built-in synthetic set.

Several sources, one interface (`build_datasets` -> train, val, class names; `build_loader` -> batches
of normalised float images (B, 3, H, W) and long targets (B,)), configured by `pss.config.DataConfig`
(a recipe's ``data:`` section):

- ``path: null`` -> the built-in *glyph* set, generated in memory from a seed (no files): the class
  is carried only by the shape of a few small glyphs on a minority of the patches, so patch choice
  matters, which is what a Patch Sampling Schedule exploits (`pss.data.builtin`).
- ``path: /data/imagenet`` -> ``<path>/<train_split>/<class>/*.jpg`` and the same for ``val_split``
  (torchvision `ImageFolder`, timm transforms).
- ``path: path/to/cifar10-jpg.tar.gz`` -> extracted once into a cache (`extract_archive`),
  then read as folders.
- ``path: hf:uoft-cs/cifar10`` (or a save_to_disk folder, parquet files) -> a Hugging Face dataset.

Each kind is a source (`pss.data.sources`: `check()` and `datasets()`, one module per kind). The
evaluation split is ``val_split`` where the data has it, else the first of validation / val / valid /
test it has (logged), for every source.

`check_data` validates all of it quickly before any long work and raises `DataError` naming the
problem and the fix. With ``in_memory: true`` images are decoded once into a uint8 tensor (on the
GPU if asked) and augmented batch-wise on that device, so the input pipeline never starves the GPU.

One module per concept: `builtin` (the glyph set), `archives` (extraction into the cache), `sources`
(one per kind of data), `checks` (`check_data`, `DataReport`), `datasets` (transforms, `InMemoryDataset`,
`CheckedImageFolder`), `build` (`build_datasets`), `augment` (on-device crop/flip and random erasing),
`loaders` (`ShardSampler`, `build_loader`). The names below are re-exported here: ``from pss.data import build_loader``.
"""
from timm.data import IMAGENET_DEFAULT_MEAN as IMAGENET_MEAN, IMAGENET_DEFAULT_STD as IMAGENET_STD

from pss.data.archives import extract_archive, is_archive
from pss.data.augment import random_crop_flip, random_erase
from pss.data.builtin import builtin_class_names, glyph_patterns, make_glyph_images, write_builtin_folder
from pss.data.checks import DataReport, check_data
from pss.data.build import build_datasets
from pss.data.datasets import CheckedImageFolder, InMemoryDataset, build_transforms
from pss.data.loaders import FolderLoader, InMemoryLoader, ShardSampler, build_loader

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CheckedImageFolder",
    "DataReport",
    "FolderLoader",
    "InMemoryDataset",
    "InMemoryLoader",
    "ShardSampler",
    "build_datasets",
    "build_loader",
    "build_transforms",
    "builtin_class_names",
    "check_data",
    "extract_archive",
    "glyph_patterns",
    "is_archive",
    "make_glyph_images",
    "random_crop_flip",
    "random_erase",
    "write_builtin_folder",
]
