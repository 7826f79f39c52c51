"""Datasets: standard on-disk layouts, checksum check, decoded-image cache, synthetic data, and
device-resident batches with on-device augmentation (docs/design.md, "Data path").

Whole splits live on the training device as uint8 NCHW tensors; an epoch is a device ``randperm``
plus gathers, so no host-device copy happens per step and the same code runs on the CPU.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Optional

import numpy as np
import torch
import torch.nn.functional as F

from . import datasets as D
from .config import AugmentConfig, ConfigError, DatasetConfig, SyntheticConfig
from .store import atomic_write_bytes, file_digest

CACHE_DIRNAME = ".bench_cache"
CACHE_VERSION = 1        # bump when decoding changes, so old cache files stop matching
TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_ZIP_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
TINY_MARKER = ".bench_verified_zip_md5"   # written by our download step after torchvision's md5 check


class DatasetNotFoundError(FileNotFoundError):
    """The dataset (or one of its files) is not where it was looked for; the message says how to get it."""


class DatasetFileError(RuntimeError):
    """A dataset file exists but cannot be read or holds something unexpected; the message names it."""


SYNTHETIC_MEAN, SYNTHETIC_STD = D.get("synthetic").mean, D.get("synthetic").std


def spec_of(name: str) -> D.Dataset:
    """The registered dataset ``name`` with files on disk (not the generated one); ConfigError otherwise."""
    ds = D.get(name)
    if ds is None or ds.loader == "synthetic":
        known = [n for n in D.names() if D.get(n).loader != "synthetic"]
        raise ConfigError(f"config key 'dataset.name' has value {name!r}; datasets with files: {', '.join(known)} "
                          "(or synthetic; a dataset of your own: --plugin FILE, docs/adding-a-dataset.md)")
    return ds


class Batch(NamedTuple):
    x: torch.Tensor      # float, normalised, (B, 3, H, W)
    y: torch.Tensor      # int64 labels
    idx: torch.Tensor    # int64 sample indices into the split the batch came from


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A seeded generator on ``device`` (train_batches needs one on the data's device)."""
    return torch.Generator(device=torch.device(device)).manual_seed(seed)


# --------------------------------------------------------------------------- device data

@dataclass
class DeviceData:
    name: str
    num_classes: int
    image_size: int
    mean: torch.Tensor       # (1, 3, 1, 1) float on the device
    std: torch.Tensor
    train_x: torch.Tensor    # uint8 (N, 3, H, W) on the device
    train_y: torch.Tensor    # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    info: dict[str, Any]
    # indices of the test images evaluated after every epoch (dataset.monitor_limit); None: all of them
    monitor: Optional[torch.Tensor] = None

    @property
    def device(self) -> torch.device:
        return self.train_x.device

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (or float in [0, 255]) images -> float ``(x / 255 - mean) / std``."""
        return (x.float() / 255.0).sub_(self.mean).div_(self.std)   # never modifies ``x``

    def steps_per_epoch(self, batch_size: int, drop_last: bool = True) -> int:
        n = self.train_x.shape[0]
        if drop_last:
            return max(1, n // batch_size) if n else 0   # a split smaller than a batch still trains
        return math.ceil(n / batch_size)

    def images_per_epoch(self, batch_size: int, drop_last: bool = True) -> int:
        """Training images one epoch processes (a dropped last batch does not count)."""
        n = self.train_x.shape[0]
        return min(n, self.steps_per_epoch(batch_size, drop_last) * batch_size)

    def train_batches(self, batch_size: int, augment: AugmentConfig, generator: torch.Generator,
                      drop_last: bool = True) -> Iterator[Batch]:
        """One epoch of augmented batches; every random draw comes from ``generator``."""
        if generator.device.type != self.device.type:
            raise ValueError(f"generator is on {generator.device} but the data is on {self.device}; "
                             "use make_generator(seed, data.device)")
        n = self.train_x.shape[0]
        perm = torch.randperm(n, generator=generator, device=self.device)
        for s in range(self.steps_per_epoch(batch_size, drop_last)):
            idx = perm[s * batch_size:(s + 1) * batch_size]
            x = augment_batch(self.train_x[idx], augment, generator)
            yield Batch(self.normalize(x), self.train_y[idx], idx)

    def test_batches(self, batch_size: int, monitor: bool = False) -> Iterator[Batch]:
        """The test split in order (``monitor``: only the per-epoch monitoring subset, if there is one)."""
        x, y = self.test_x, self.test_y
        if monitor and self.monitor is not None:
            x, y = x[self.monitor], y[self.monitor]
        n = x.shape[0]
        for start in range(0, n, batch_size):
            end = min(start + batch_size, n)
            idx = torch.arange(start, end, device=self.device)
            yield Batch(self.normalize(x[start:end]), y[start:end], idx)

    def test_size(self, monitor: bool = False) -> int:
        return len(self.monitor) if monitor and self.monitor is not None else len(self.test_y)

    def train_view(self, idx: torch.Tensor, augment: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
        """A fresh augmented, normalised view of train samples ``idx`` (CS-KD's partners, DLB's
        second view), drawn from ``generator``."""
        return self.normalize(augment_batch(self.train_x[idx], augment, generator))

    def subset_classes(self, classes: list[int]) -> "DeviceData":
        """The train and test samples of ``classes`` only, relabelled 0..k-1 in the given order
        (COLT's partitions), without reloading: one gather on the device. Sample order is kept."""
        if len(set(classes)) != len(classes) or not all(0 <= c < self.num_classes for c in classes):
            raise ValueError(f"classes must be distinct ids in [0, {self.num_classes}), got {classes}")
        lut = torch.full((self.num_classes,), -1, dtype=torch.int64, device=self.device)
        lut[torch.tensor(classes, device=self.device)] = torch.arange(len(classes), device=self.device)

        def part(x, y):
            keep = torch.nonzero(lut[y] >= 0).flatten()
            return x[keep], lut[y[keep]]

        (tr_x, tr_y), (te_x, te_y) = part(self.train_x, self.train_y), part(self.test_x, self.test_y)
        monitor = None
        if self.monitor is not None:     # the monitored images of these classes, at their new positions
            member = torch.zeros(len(self.test_y), dtype=torch.bool, device=self.device)
            member[self.monitor] = True
            monitor = torch.nonzero(member[torch.nonzero(lut[self.test_y] >= 0).flatten()]).flatten()
        info = dict(self.info, classes=[(self.info.get("classes") or list(range(self.num_classes)))[c]
                                        for c in classes],
                    num_classes=len(classes), n_train=len(tr_y), n_test=len(te_y), complete=False,
                    classes_present={"train": int(tr_y.unique().numel()), "test": int(te_y.unique().numel())},
                    fingerprint=hashlib.sha256(f"{self.info['fingerprint']}/classes{list(classes)}".encode())
                    .hexdigest()[:16])
        return DeviceData(self.name, len(classes), self.image_size, self.mean, self.std, tr_x, tr_y, te_x, te_y,
                          info, monitor)


def augment_batch(x: torch.Tensor, augment: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Random pad-and-crop, horizontal flip and rotation, per sample, without leaving the device.

    Returns uint8 when no rotation is applied, else float in [0, 255] (no re-quantisation).
    """
    b, c, h, w = x.shape
    dev = x.device
    p = augment.crop_padding
    if p > 0:
        padded = x.new_zeros(b, c, h + 2 * p, w + 2 * p)
        padded[:, :, p:p + h, p:p + w] = x
        oy = torch.randint(0, 2 * p + 1, (b,), generator=generator, device=dev)
        ox = torch.randint(0, 2 * p + 1, (b,), generator=generator, device=dev)
        x = _windows(padded, torch.arange(b, device=dev), oy, ox, h, w)
    if augment.flip:
        flip = torch.rand(b, generator=generator, device=dev) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if augment.rotate_deg > 0:
        angle = (torch.rand(b, generator=generator, device=dev) * 2 - 1) * math.radians(augment.rotate_deg)
        cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        grid = F.affine_grid(theta, [b, c, h, w], align_corners=False)
        x = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return x


def _windows(src: torch.Tensor, which: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor,
             h: int, w: int) -> torch.Tensor:
    """``src[which[i], :, oy[i]:oy[i]+h, ox[i]:ox[i]+w]`` for every i, as one gather (no Python loop)."""
    dev = src.device
    rows = (oy[:, None] + torch.arange(h, device=dev))[:, None, :, None]
    cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, None, :]
    return src[which[:, None, None, None], torch.arange(src.shape[1], device=dev)[None, :, None, None], rows, cols]


# --------------------------------------------------------------------------- loading

def load_dataset(cfg: DatasetConfig, data_dir: Path | str, device: torch.device | str = "cpu",
                 download: bool = False) -> DeviceData:
    """Load (or generate) ``cfg.name``, subset it as configured and put it on ``device``."""
    device = torch.device(device)
    data_dir = Path(data_dir)
    if cfg.name == "synthetic":
        sc = cfg.synthetic
        (tr_x, tr_y), (te_x, te_y) = make_synthetic(sc)
        num_classes, image_size = sc.num_classes, sc.image_size
        mean, std = SYNTHETIC_MEAN, SYNTHETIC_STD
        official, detail = False, {"synthetic": "generated data, not a real dataset"}
        source, full = f"synthetic (generated, seed {sc.seed})", (sc.train_size, sc.test_size)
        note = None
    else:
        spec = spec_of(cfg.name)
        root = data_dir / spec.folder
        if not root.is_dir():
            if not download:
                raise DatasetNotFoundError(_not_found(cfg.name, root, data_dir))
            _download(cfg.name, data_dir)
        (tr_x, tr_y, tr_md5), (te_x, te_y, te_md5) = (_load_split(cfg.name, root, data_dir, s)
                                                     for s in ("train", "test"))
        num_classes, image_size, mean, std = spec.num_classes, spec.image_size, spec.mean, spec.std
        if spec.md5:
            got = {**tr_md5, **te_md5}
            detail = {f: "md5 ok" if got.get(f) == want else f"md5 differs: {got.get(f)} (official {want})"
                      for f, want in spec.md5.items()}
            official = all(v == "md5 ok" for v in detail.values())
        elif spec.loader == "tiny-imagenet":
            official, detail = _tiny_official(root)
        else:
            official, detail = False, {spec.folder: "no official checksums to compare with"}
        source, full = str(root), spec.sizes
        note = _provenance_note(root)

    if cfg.classes is not None:
        bad = [c for c in cfg.classes if not 0 <= c < num_classes]
        if bad:
            raise ConfigError(f"config key 'dataset.classes' has value {cfg.classes!r}; ids {bad} are out of "
                              f"range; allowed: class ids in [0, {num_classes - 1}] for {cfg.name}")
        tr_x, tr_y = _keep_classes(tr_x, tr_y, cfg.classes, num_classes)
        te_x, te_y = _keep_classes(te_x, te_y, cfg.classes, num_classes)
        num_classes = len(cfg.classes)
    tr_x, tr_y = _limit(tr_x, tr_y, cfg.train_limit)
    te_x, te_y = _limit(te_x, te_y, cfg.test_limit)
    native = image_size
    if cfg.image_size is not None and cfg.image_size != image_size:
        tr_x, te_x, image_size = resize(tr_x, cfg.image_size), resize(te_x, cfg.image_size), cfg.image_size

    monitor = _subset(len(te_y), cfg.monitor_limit)
    info = {"name": cfg.name, "title": D.title(cfg.name), "official": bool(official), "official_detail": detail,
            "fingerprint": fingerprint(tr_x, tr_y, te_x, te_y), "source": source,
            "n_train": len(tr_y), "n_test": len(te_y), "num_classes": num_classes,
            "classes": list(cfg.classes) if cfg.classes is not None else None,
            "complete": (len(tr_y), len(te_y)) == tuple(full),
            # classes with at least one image (a slice or a limit can leave some out)
            "classes_present": {"train": int(tr_y.unique().numel()), "test": int(te_y.unique().numel())},
            "image_size": image_size, "resized_from": native if image_size != native else None,
            "provenance_note": note,
            # test images evaluated after every epoch (the best epoch is chosen on them); the last epoch of
            # every training call is evaluated on all n_test
            "n_monitor": len(te_y) if monitor is None else len(monitor)}

    def stat(v):
        return torch.tensor(v, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return DeviceData(cfg.name, num_classes, image_size, stat(mean), stat(std),
                      tr_x.to(device), tr_y.to(device), te_x.to(device), te_y.to(device), info,
                      None if monitor is None else monitor.to(device))


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 NCHW images at ``size`` x ``size``: antialiased bilinear (what PIL's resize does, as in the
    official CS-KD and DLB code that runs Tiny ImageNet at 32 px), rounded back to uint8."""
    out = torch.empty(len(x), x.shape[1], size, size, dtype=torch.uint8)
    for s in range(0, len(x), 4096):                       # chunks bound the float copy
        part = F.interpolate(x[s:s + 4096].float(), size=(size, size), mode="bilinear", antialias=True,
                             align_corners=False)
        out[s:s + 4096] = part.round_().clamp_(0, 255).to(torch.uint8)
    return out


def check_dataset(cfg: DatasetConfig, data_dir: Path | str, download: bool = False) -> None:
    """Fail fast (before any training) when a dataset's files are absent; reading and checking their
    content happens at load time (``python -m bench run --dry-run`` loads them)."""
    if cfg.name == "synthetic" or download:
        return
    spec, data_dir = spec_of(cfg.name), Path(data_dir)
    root = data_dir / spec.folder
    if not root.is_dir():
        raise DatasetNotFoundError(_not_found(cfg.name, root, data_dir))
    names = [f for files in spec.splits.values() for f in files] + ([spec.meta] if spec.meta else [])
    for f in names + list(spec.required):
        _require(root / f, cfg.name, root)


def fingerprint(*tensors: torch.Tensor) -> str:
    """sha256 (16 hex chars) of the shapes, dtypes and bytes of the tensors actually used."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)}{t.dtype};".encode())
        h.update(t.numpy())                                   # buffer protocol: no copy
    return h.hexdigest()[:16]


def _keep_classes(x, y, classes, num_classes):
    lut = torch.full((num_classes,), -1, dtype=torch.int64)
    lut[torch.tensor(classes)] = torch.arange(len(classes))
    keep = torch.nonzero(lut[y] >= 0).flatten()          # ascending: canonical order is kept
    return x[keep], lut[y[keep]]


def _subset(n: int, limit: int | None) -> torch.Tensor | None:
    """Sorted indices of a fixed-seed subset of ``limit`` of ``n`` items (None: all of them)."""
    # A fixed-seed permutation rather than a prefix: class-sorted splits (Tiny train) keep every class.
    if limit is None or limit >= n:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:limit].sort().values


def _limit(x, y, limit):
    keep = _subset(len(y), limit)
    return (x, y) if keep is None else (x[keep], y[keep])


def _not_found(name: str, path: Path, data_dir: Path) -> str:
    return (f"dataset {name!r} not found: looked for {path}\n"
            f"Get it in one of two ways:\n"
            f"  1. pass --download to fetch the official archive with torchvision into {data_dir} "
            f"(needs network access), or\n"
            f"  2. place the files there, laid out as {data_dir}/{D.get(name).layout}")


def _download(name: str, data_dir: Path) -> None:
    """Fetch and extract the official archive (the entry's ``download``); torchvision checks its md5."""
    import torchvision

    spec = spec_of(name)
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        if spec.download is None:
            raise ValueError(f"dataset {name!r} has no download source: place its files yourself")
        if spec.download.startswith("torchvision:"):
            getattr(torchvision.datasets, spec.download.split(":", 1)[1])(root=str(data_dir), download=True)
        elif spec.download == "tiny-imagenet":
            torchvision.datasets.utils.download_and_extract_archive(TINY_URL, str(data_dir), md5=TINY_ZIP_MD5)
            # Tiny ImageNet has no per-file md5s: remember that the zip itself was verified.
            (data_dir / spec.folder / TINY_MARKER).write_text(TINY_ZIP_MD5 + "\n")
        else:
            raise ValueError(f"unknown download source {spec.download!r}")
    except Exception as e:
        raise DatasetNotFoundError(f"downloading {name} failed ({type(e).__name__}: {e})\n"
                                   + _not_found(name, data_dir / spec.folder, data_dir)) from e


def _provenance_note(root: Path) -> str | None:
    """What the dataset folder's PROVENANCE.txt says (a copy that is partial or lossy says so there:
    shared/data/materialize.py writes one), or None without one."""
    try:
        return " ".join((root / "PROVENANCE.txt").read_text(errors="replace").split())[:500] or None
    except OSError:
        return None


def _tiny_official(root: Path) -> tuple[bool, dict[str, str]]:
    marker = root / TINY_MARKER
    try:
        ok = marker.read_text().strip() == TINY_ZIP_MD5
    except OSError:
        return False, {"tiny-imagenet-200.zip": f"not verified: no {TINY_MARKER} (written only by --download); "
                                                "Tiny ImageNet publishes no per-file checksums"}
    if ok:
        return True, {"tiny-imagenet-200.zip": f"md5 {TINY_ZIP_MD5} verified at download"}
    return False, {"tiny-imagenet-200.zip": f"not verified: {marker} does not hold the official zip md5"}


# --------------------------------------------------------------------------- split files and cache

def _require(path: Path, name: str, root: Path) -> Path:
    if not path.is_file():
        raise DatasetNotFoundError(f"{path} is missing\n" + _not_found(name, root, root.parent))
    return path


def _load_split(name: str, root: Path, data_dir: Path,
                split: str) -> tuple[torch.Tensor, torch.Tensor, dict[str, str]]:
    """(x uint8 NCHW, y int64, {file: md5}) of one split, from the cache when it is current.

    The cache key covers file names, sizes and mtimes, so the md5s stored with the pixels stay valid
    and a cache hit does not re-read the source files."""
    spec = spec_of(name)
    if spec.loader == "cifar-pickle":
        files = [_require(root / f, name, root) for f in spec.splits[split] + [spec.meta]]
    elif spec.loader == "tiny-imagenet":
        files, images, labels = _tiny_files(root, split)
    elif spec.loader == "image-folder":
        files, images, labels = _folder_files(spec, root, split)
    else:                                          # a callable of the entry: its own files, its own decoding
        files = sorted(p for p in (root / split).rglob("*") if p.is_file()) if (root / split).is_dir() else []

    def decode() -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
        if spec.loader == "cifar-pickle":
            return _decode_cifar(spec, files)
        if spec.loader in ("tiny-imagenet", "image-folder"):
            return _decode_jpegs(images, spec.image_size), labels, {}
        x, y, md5 = spec.loader(spec, root, split)
        return np.ascontiguousarray(x, dtype=np.uint8), np.asarray(y, dtype=np.int64), dict(md5)

    key = _files_key(files, root)
    cache = data_dir / CACHE_DIRNAME / f"{name}-{split}-{key}.pt"
    try:
        obj = torch.load(cache, weights_only=True)
        x, y, md5 = obj["x"], obj["y"], obj["info"]["md5"]
        if x.dtype == torch.uint8 and x.ndim == 4 and y.dtype == torch.int64 and len(x) == len(y):
            return x, y, md5
    except Exception:            # missing, truncated or foreign: decode again and overwrite it
        pass
    x_np, y_np, md5 = decode()
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    _write_cache(cache, {"x": x, "y": y, "info": {"md5": md5, "files": len(files), "version": CACHE_VERSION}})
    return x, y, md5


def _files_key(files: list[Path], root: Path) -> str:
    """Changes whenever a source file is renamed, resized or rewritten (mtime), or decoding changes."""
    h = hashlib.sha256(f"v{CACHE_VERSION}".encode())
    for f in files:
        try:
            st = f.stat()
        except OSError as e:
            raise DatasetFileError(f"cannot read dataset file {f}: {e}") from e
        h.update(f"{f.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _write_cache(path: Path, obj: dict) -> None:
    """Atomic; silently skipped where the cache folder is not writable."""
    try:
        buf = io.BytesIO()
        torch.save(obj, buf)
        atomic_write_bytes(path, buf.getvalue())
        prefix = path.name.rsplit("-", 1)[0] + "-"            # drop files of older keys of this split
        for old in path.parent.glob(prefix + "*.pt"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:
        pass


# --------------------------------------------------------------------------- CIFAR

class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR files are pickles; allow only what numpy arrays need, so a file cannot run code."""
    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
                ("numpy", "ndarray"), ("numpy", "dtype"),
                ("_codecs", "encode")}          # how Python 3 writes bytes at pickle protocol <= 2

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR file")
        return super().find_class(module, name)


def _decode_cifar(spec: D.Dataset, files: list[Path]) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    md5 = {f.name: file_digest(f, "md5") for f in files}      # compared with the official values by the caller
    xs, ys = [], []
    for f in files[:-1]:                                     # the last one is the meta file
        try:
            with open(f, "rb") as fh:
                obj = _NumpyOnlyUnpickler(fh, encoding="bytes").load()
            # Official files (pickled by Python 2) have bytes keys; re-written ones have str keys.
            obj = {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}
            data = np.asarray(obj["data"], dtype=np.uint8)
            labels = np.asarray(obj[spec.label_key], dtype=np.int64).reshape(-1)
            data = data.reshape(len(data), 3, 32, 32) if data.size else np.empty((0, 3, 32, 32), np.uint8)
        except Exception as e:
            raise DatasetFileError(f"cannot read CIFAR file {f}: {type(e).__name__}: {e}") from e
        if len(data) != len(labels) or (len(labels) and not 0 <= labels.min() <= labels.max() < spec.num_classes):
            raise DatasetFileError(f"CIFAR file {f} is inconsistent: {len(data)} images, {len(labels)} labels "
                                   f"in [{labels.min(initial=0)}, {labels.max(initial=0)}]")
        xs.append(data)
        ys.append(labels)
    return np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys), md5


# --------------------------------------------------------------------------- Tiny ImageNet

def _natural(path: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _tiny_files(root: Path, split: str) -> tuple[list[Path], list[Path], np.ndarray]:
    """(files hashed into the cache key, images in decode order, labels)."""
    wnids_path = _require(root / "wnids.txt", "tinyimagenet", root)
    wnids = wnids_path.read_text().split()
    if len(wnids) != 200 or len(set(wnids)) != 200:
        raise DatasetFileError(f"{wnids_path} should list 200 distinct wnids, found {len(wnids)}")
    label_of = {w: i for i, w in enumerate(wnids)}
    if split == "train":
        images, labels = [], []
        for i, w in enumerate(wnids):
            found = sorted((root / "train" / w / "images").glob("*.JPEG"), key=_natural)
            images += found
            labels += [i] * len(found)
        if not images:
            raise DatasetNotFoundError(f"no train images under {root / 'train'}\n"
                                       + _not_found("tinyimagenet", root, root.parent))
        return [wnids_path, *images], images, np.array(labels, np.int64)
    ann_path = _require(root / "val" / "val_annotations.txt", "tinyimagenet", root)
    rows = []
    for n, line in enumerate(ann_path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or parts[1] not in label_of:
            raise DatasetFileError(f"{ann_path} line {n}: expected 'file<TAB>wnid<TAB>bbox' with a wnid from "
                                   f"wnids.txt, got {line!r}")
        rows.append((root / "val" / "images" / parts[0], label_of[parts[1]]))
    rows.sort(key=lambda r: _natural(r[0]))
    images = [r[0] for r in rows]
    return [wnids_path, ann_path, *images], images, np.array([r[1] for r in rows], np.int64)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _folder_files(spec: D.Dataset, root: Path, split: str) -> tuple[list[Path], list[Path], np.ndarray]:
    """The ``image-folder`` format (torchvision's ImageFolder): ``<root>/<split>/<class>/<image>``, the
    classes in sorted order; (files hashed into the cache key, images in decode order, labels)."""
    base = root / split
    if not base.is_dir():
        raise DatasetNotFoundError(f"{base} is missing\n" + _not_found(spec.name, root, root.parent))
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())
    if len(classes) != spec.num_classes:
        raise DatasetFileError(f"{base} holds {len(classes)} class folders, dataset {spec.name!r} declares "
                               f"{spec.num_classes}")
    images, labels = [], []
    for i, c in enumerate(classes):
        found = sorted((p for p in (base / c).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural)
        images += found
        labels += [i] * len(found)
    return images, images, np.array(labels, np.int64)


def _decode_jpegs(paths: list[Path], size: int) -> np.ndarray:
    """Decode to uint8 NCHW; threads help because Pillow releases the GIL while decoding."""
    from PIL import Image

    out = np.empty((len(paths), 3, size, size), np.uint8)

    def work(chunk: range) -> None:
        for i in chunk:
            try:
                with Image.open(paths[i]) as im:
                    a = np.asarray(im.convert("RGB"))    # some Tiny ImageNet files are grayscale
            except Exception as e:
                raise DatasetFileError(f"cannot decode image {paths[i]}: {type(e).__name__}: {e}") from e
            if a.shape != (size, size, 3):
                raise DatasetFileError(f"image {paths[i]} is {a.shape[1]}x{a.shape[0]}, expected {size}x{size}")
            out[i] = a.transpose(2, 0, 1)

    chunks = [range(s, min(s + 512, len(paths))) for s in range(0, len(paths), 512)]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as ex:
        list(ex.map(work, chunks))                          # re-raises the first error
    return out


# --------------------------------------------------------------------------- synthetic

# Sample = (1 - lam) * own prototype + lam * another class's, lam ~ U(0, SYN_MIX), times a brightness
# factor 1 +- SYN_BRIGHT, plus N(0, SYN_NOISE) pixel noise. With SYN_MIX > 0.5 some samples look more
# like another class, so accuracy cannot reach 100%. Measured on the default config (10 classes,
# 16x16, 2000/500, default augmentation): a small ResNet gets ~70% test accuracy after 5 epochs and
# ~75-80% after 15; a nearest-centroid classifier ~0.8.
SYN_MIX, SYN_BRIGHT, SYN_NOISE = 0.6, 0.3, 0.25
SYN_CHUNK = 4096          # samples rendered at a time (bounds memory); part of the random stream order


def _seeded(seed: int, tag: str) -> torch.Generator:
    # Separate streams per part, so e.g. the test set does not change when train_size does.
    return torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(f"{seed}/{tag}".encode()).digest()[:7], "big"))


def make_synthetic(sc: SyntheticConfig) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Learnable but not trivial: each class is a smooth random colour prototype; a sample is its
    prototype, randomly shifted, blended with another class's prototype, brightness-jittered and noisy."""
    c, s = sc.num_classes, sc.image_size
    shift = max(1, s // 8)
    g = _seeded(sc.seed, "prototypes")
    coarse = torch.rand(c, 3, 4, 4, generator=g)
    protos = F.interpolate(coarse, size=(s + 2 * shift,) * 2, mode="bicubic", align_corners=True).clamp(0, 1)
    return (_synthetic_split(protos, s, shift, sc.train_size, _seeded(sc.seed, "train")),
            _synthetic_split(protos, s, shift, sc.test_size, _seeded(sc.seed, "test")))


def _synthetic_split(protos: torch.Tensor, s: int, shift: int, n: int,
                     g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    c = protos.shape[0]
    y = (torch.arange(n) % c)[torch.randperm(n, generator=g)]          # balanced classes
    other = (y + torch.randint(1, c, (n,), generator=g)) % c
    oy, ox = torch.randint(0, 2 * shift + 1, (2, n), generator=g)
    lam = torch.rand(n, 1, 1, 1, generator=g) * SYN_MIX
    bright = 1 + SYN_BRIGHT * (2 * torch.rand(n, 1, 1, 1, generator=g) - 1)
    x = torch.empty(n, 3, s, s, dtype=torch.uint8)
    for a in range(0, n, SYN_CHUNK):
        sl = slice(a, a + SYN_CHUNK)
        own = _windows(protos, y[sl], oy[sl], ox[sl], s, s)
        mix = _windows(protos, other[sl], oy[sl], ox[sl], s, s)
        img = ((1 - lam[sl]) * own + lam[sl] * mix) * bright[sl]
        img += SYN_NOISE * torch.randn(img.shape, generator=g)
        x[sl] = (img * 255).round_().clamp_(0, 255).to(torch.uint8)
    return x, y
