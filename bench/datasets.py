"""The datasets the harness knows, one entry each: the one place a dataset is defined (torch-free).

An entry (``Dataset``) says what the config validation, the data loader, the cost preview and the report
need: its name and title, classes, official split sizes, image size and normalisation, where it lies
under ``--data-dir`` and how it is laid out there, how its files are decoded (``loader``), which files
must exist, their official md5s (if any) and how ``--download`` fetches it. The built-in ones are below;
adding one in a known format (``cifar-pickle``, ``tiny-imagenet``, ``image-folder``) touches this module
only. A dataset of one's own registers from a file given with ``--plugin`` (or an installed package's
entry point), as a method does: ``register_dataset(Dataset(...))``; its ``loader`` may be a callable
``(dataset, root, split) -> (x uint8 array N x 3 x H x W, y int64 array, {file: md5})`` for a format of its own
(docs/adding-a-dataset.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Union

Loader = Union[str, Callable]
FORMATS = ("cifar-pickle", "tiny-imagenet", "image-folder", "synthetic")


@dataclass(frozen=True)
class Dataset:
    name: str                                     # the config's dataset.name
    title: str                                    # how tables and figures name it
    num_classes: int
    sizes: tuple[int, int]                        # official (train, test) image counts
    image_size: int                               # pixels a side, as stored
    mean: tuple[float, float, float]              # normalisation (of [0, 1] pixels)
    std: tuple[float, float, float]
    folder: str = ""                              # under --data-dir ('' for generated data)
    layout: str = ""                              # how the files lie there (for the not-found message)
    loader: Loader = "image-folder"               # a format of FORMATS, or a callable (module docstring)
    required: tuple[str, ...] = ()                # files that must exist under the folder (checked first)
    md5: dict = field(default_factory=dict)       # official md5 per file (cifar-pickle)
    splits: dict = field(default_factory=dict)    # cifar-pickle: data files per split
    meta: str = ""                                # cifar-pickle: the label-names file (md5-checked only)
    label_key: str = "labels"                     # cifar-pickle: the labels' key in a batch
    download: Optional[str] = None                # torchvision:CIFAR10, torchvision:CIFAR100, tiny-imagenet

    def __post_init__(self):
        if not callable(self.loader) and self.loader not in FORMATS:
            raise DatasetRegistryError(f"dataset {self.name!r}: loader {self.loader!r} is not a format of "
                                       f"{', '.join(FORMATS)} nor a callable")


class DatasetRegistryError(ValueError):
    """A dataset entry that cannot be registered (a clash, a bad loader)."""


_datasets: dict[str, Dataset] = {}


def register_dataset(ds: Dataset) -> Dataset:
    """Make ``ds`` known under ``ds.name`` (returns it). A name cannot be taken twice by different entries."""
    old = _datasets.get(ds.name)
    if old is not None and old != ds:
        raise DatasetRegistryError(f"dataset name {ds.name!r} is already taken; choose another name")
    _datasets[ds.name] = ds
    return ds


def get(name: str) -> Optional[Dataset]:
    return _datasets.get(name)


def names() -> list[str]:
    return list(_datasets)


def title(name: str) -> str:
    """A dataset's title ('CIFAR-10'); its name when unknown here."""
    ds = _datasets.get(name)
    return ds.title if ds else name


_CIFAR_MEAN, _CIFAR_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)   # the COLT lab code's

register_dataset(Dataset(
    "cifar10", "CIFAR-10", 10, (50000, 10000), 32, _CIFAR_MEAN, _CIFAR_STD, folder="cifar-10-batches-py",
    layout="cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}", loader="cifar-pickle",
    md5={"data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
         "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
         "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e",
         "batches.meta": "5ff9c542aee3614f3951f8cda6e48888"},
    splits={"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}, meta="batches.meta",
    download="torchvision:CIFAR10"))
register_dataset(Dataset(
    "cifar100", "CIFAR-100", 100, (50000, 10000), 32, _CIFAR_MEAN, _CIFAR_STD, folder="cifar-100-python",
    layout="cifar-100-python/{train, test, meta}", loader="cifar-pickle",
    md5={"train": "16019d7e3df5f24257cddd939b257f8d", "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
         "meta": "7973b15100ade9c7d40fb424638fde48"},
    splits={"train": ["train"], "test": ["test"]}, meta="meta", label_key="fine_labels",
    download="torchvision:CIFAR100"))
register_dataset(Dataset(
    "tinyimagenet", "Tiny-ImageNet", 200, (100000, 10000), 64, (0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262),
    folder="tiny-imagenet-200", loader="tiny-imagenet", required=("wnids.txt", "val/val_annotations.txt"),
    layout="tiny-imagenet-200/{wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG, val/val_annotations.txt}",
    download="tiny-imagenet"))
# generated, not a real dataset (bench/data.py::make_synthetic; its sizes are the config's dataset.synthetic)
register_dataset(Dataset("synthetic", "synthetic", 10, (2000, 500), 16, (0.5, 0.5, 0.5),
                         (0.25, 0.25, 0.25), loader="synthetic"))
