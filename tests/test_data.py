"""bench/data.py: synthetic data, device batches and augmentation, subsetting, real on-disk layouts
(written by shared/data/materialize.py), md5 checks, the decoded-image cache and error messages."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import bench.data as data
from bench.config import AugmentConfig, ConfigError, DatasetConfig, SyntheticConfig
from conftest import MATERIALIZE
from bench.data import (Batch, DatasetFileError, DatasetNotFoundError, DeviceData, load_dataset,
                        make_generator)

NPZ = MATERIALIZE.parent          # the real-data sources (../shared/data); the tests that read them skip without
NO_AUG = AugmentConfig(crop_padding=0, flip=False, rotate_deg=0.0)


def synthetic(**kw) -> DatasetConfig:
    return DatasetConfig(name="synthetic", synthetic=SyntheticConfig(**kw))


def small(**kw) -> DeviceData:
    return load_dataset(synthetic(train_size=103, test_size=37, image_size=8, **kw), "/nonexistent")


def one_image_data(img: torch.Tensor, n: int) -> DeviceData:
    """n copies of one uint8 (3, H, W) image, mean 0 and std 1/255 so that batches show raw pixels."""
    x = img.expand(n, *img.shape).contiguous()
    y = torch.arange(n) % 2
    stat = torch.zeros(1, 3, 1, 1)
    return DeviceData("t", 2, img.shape[-1], stat, stat + 1 / 255, x, y, x, y, {})


# --------------------------------------------------------------------------- synthetic

def test_synthetic_deterministic_balanced_and_typed():
    a, b = load_dataset(synthetic(), "/nonexistent"), load_dataset(synthetic(), "/nonexistent")
    c = load_dataset(synthetic(seed=1), "/nonexistent")
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert a.info["fingerprint"] == b.info["fingerprint"] != c.info["fingerprint"]
    assert len(a.info["fingerprint"]) == 16
    assert not torch.equal(a.train_x, c.train_x)
    assert a.train_x.shape == (2000, 3, 16, 16) and a.test_x.shape == (500, 3, 16, 16)
    assert a.train_x.dtype == torch.uint8 and a.train_y.dtype == torch.int64
    assert torch.bincount(a.train_y).tolist() == [200] * 10
    assert torch.bincount(a.test_y).tolist() == [50] * 10
    assert a.mean.shape == (1, 3, 1, 1) and a.std.dtype == torch.float32
    info = a.info
    assert info["official"] is False and info["source"] == "synthetic (generated, seed 0)"
    assert (info["n_train"], info["n_test"], info["num_classes"], info["classes"]) == (2000, 500, 10, None)


def test_synthetic_test_split_independent_of_train_size():
    a, b = load_dataset(synthetic(), "/x"), load_dataset(synthetic(train_size=300), "/x")
    assert torch.equal(a.test_x, b.test_x) and len(b.train_y) == 300


def test_synthetic_has_class_structure_but_is_not_trivial():
    d = load_dataset(synthetic(), "/x")
    x, tx = d.train_x.float().flatten(1), d.test_x.float().flatten(1)
    centroids = torch.stack([x[d.train_y == k].mean(0) for k in range(10)])
    acc = (torch.cdist(tx, centroids).argmin(1) == d.test_y).float().mean().item()
    assert 0.4 < acc < 0.97, acc      # chance is 0.1; blending with other classes caps it below 1


# --------------------------------------------------------------------------- batches

def test_train_batches_cover_each_index_once_and_align_labels():
    d = small()
    batches = list(d.train_batches(10, AugmentConfig(rotate_deg=15), make_generator(0), drop_last=False))
    assert len(batches) == d.steps_per_epoch(10, drop_last=False) == 11
    idx = torch.cat([b.idx for b in batches])
    assert torch.equal(idx.sort().values, torch.arange(103))
    for b in batches:
        assert isinstance(b, Batch) and b.x.dtype == torch.float32 and b.x.shape[1:] == (3, 8, 8)
        assert torch.equal(b.y, d.train_y[b.idx])
    assert [len(b.y) for b in d.train_batches(10, NO_AUG, make_generator(0))] == [10] * 10
    assert d.steps_per_epoch(10) == 10
    # A split smaller than one batch still yields one (smaller) batch with drop_last.
    assert [len(b.y) for b in d.train_batches(500, NO_AUG, make_generator(0))] == [103]


def test_train_batches_reproducible_from_generator_seed():
    d = small()
    aug = AugmentConfig(crop_padding=2, flip=True, rotate_deg=20)
    a, b, c = ([(bt.x, bt.idx) for bt in d.train_batches(16, aug, make_generator(s))] for s in (5, 5, 6))
    assert all(torch.equal(x1, x2) and torch.equal(i1, i2) for (x1, i1), (x2, i2) in zip(a, b))
    assert not torch.equal(a[0][1], c[0][1])


def test_no_augmentation_gives_normalised_originals():
    d = small()
    for b in d.train_batches(16, NO_AUG, make_generator(0)):
        assert torch.allclose(b.x, (d.train_x[b.idx].float() / 255 - d.mean) / d.std)


def test_crop_with_padding_moves_content():
    img = torch.zeros(3, 8, 8, dtype=torch.uint8)
    img[:, 4, 5] = 255
    d = one_image_data(img, 200)
    x = torch.cat([b.x for b in d.train_batches(50, AugmentConfig(crop_padding=2, flip=False), make_generator(0))])
    assert x.shape == (200, 3, 8, 8)
    assert torch.all((x[:, 0] > 0).flatten(1).sum(1) == 1)          # the pixel stays inside, once
    pos = (x[:, 0] > 0).flatten(1).float().argmax(1)
    rows, cols = pos // 8, pos % 8
    assert rows.min() == 2 and rows.max() == 6 and cols.min() == 3 and cols.max() == 7
    assert len(set(zip(rows.tolist(), cols.tolist()))) == 25         # all 5x5 offsets occur


def test_flip_flips_some_samples():
    img = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    d = one_image_data(img, 100)
    x = torch.cat([b.x for b in d.train_batches(100, AugmentConfig(crop_padding=0, flip=True), make_generator(0))])
    same = torch.isclose(x, img.float(), atol=1e-3).flatten(1).all(1)
    flipped = torch.isclose(x, img.flip(2).float(), atol=1e-3).flatten(1).all(1)
    assert torch.all(same | flipped) and 20 < flipped.sum() < 80


def test_rotation_keeps_shape_and_rotates():
    img = torch.full((3, 9, 9), 200, dtype=torch.uint8)
    d = one_image_data(img, 64)
    x = next(d.train_batches(64, AugmentConfig(crop_padding=0, flip=False, rotate_deg=45), make_generator(0))).x
    assert x.shape == (64, 3, 9, 9)
    assert torch.allclose(x[:, :, 4, 4], torch.tensor(200.0))        # the centre stays
    assert (x[:, 0, 0, 0] < 150).sum() > 10                          # corners rotate in zeros


def test_test_batches_in_order_unaugmented():
    d = small()
    batches = list(d.test_batches(10))
    assert [len(b.y) for b in batches] == [10, 10, 10, 7]
    assert torch.equal(torch.cat([b.idx for b in batches]), torch.arange(37))
    assert torch.equal(torch.cat([b.y for b in batches]), d.test_y)
    assert torch.allclose(torch.cat([b.x for b in batches]), d.normalize(d.test_x))
    assert torch.allclose(d.normalize(torch.full((1, 3, 1, 1), 255, dtype=torch.uint8)), (1 - d.mean) / d.std)


# --------------------------------------------------------------------------- subsetting

def test_classes_are_kept_in_order_and_relabelled():
    full = load_dataset(synthetic(), "/x")
    d = load_dataset(DatasetConfig(name="synthetic", classes=[3, 1, 7]), "/x")
    assert d.num_classes == 3 and d.info["classes"] == [3, 1, 7] and d.info["num_classes"] == 3
    for new, old in enumerate([3, 1, 7]):
        assert torch.equal(d.train_x[d.train_y == new], full.train_x[full.train_y == old])
        assert torch.equal(d.test_x[d.test_y == new], full.test_x[full.test_y == old])
    assert d.info["complete"] is False
    with pytest.raises(ConfigError, match="out of range"):
        load_dataset(DatasetConfig(name="synthetic", classes=[0, 10]), "/x")


def test_limits_keep_a_sorted_fixed_subset():
    full = load_dataset(synthetic(), "/x")
    d = load_dataset(DatasetConfig(name="synthetic", train_limit=50, test_limit=20), "/x")
    assert (len(d.train_y), len(d.test_y), d.info["n_train"], d.info["n_test"]) == (50, 20, 50, 20)
    rows = full.train_x.flatten(1)
    pos = [int((rows == r).all(1).nonzero()[0]) for r in d.train_x.flatten(1)]
    assert pos == sorted(pos) and len(set(pos)) == 50
    assert torch.equal(d.train_y, full.train_y[pos])
    again = load_dataset(DatasetConfig(name="synthetic", train_limit=50, test_limit=20), "/x")
    assert again.info["fingerprint"] == d.info["fingerprint"] != full.info["fingerprint"]


def test_limit_on_class_sorted_split_keeps_all_classes():
    y = torch.arange(10).repeat_interleave(100)        # class-sorted, like Tiny ImageNet train
    x = torch.arange(1000).view(1000, 1, 1, 1)
    sx, sy = data._limit(x, y, 100)
    assert len(sy) == 100 and set(sy.tolist()) == set(range(10))
    assert torch.equal(sx.flatten().sort().values, sx.flatten())


# --------------------------------------------------------------------------- real layouts

@pytest.fixture(scope="session")
def real_dir(tmp_path_factory, materialize) -> Path:
    script = materialize
    d = tmp_path_factory.mktemp("data")
    for args in (["--only", "cifar10,cifar100", "--cifar10-exact"],
                 ["--only", "tinyimagenet", "--tinyimagenet-per-class", "2"]):
        subprocess.run([sys.executable, str(script), str(d), *args], check=True, capture_output=True)
    return d


@pytest.fixture(scope="module")
def tiny(real_dir) -> DeviceData:
    return load_dataset(DatasetConfig(name="tinyimagenet"), real_dir)


def copy_cifar10(real_dir: Path, dst: Path) -> Path:
    shutil.copytree(real_dir / "cifar-10-batches-py", dst / "cifar-10-batches-py")
    return dst


def test_cifar10_exact_pixels_labels_and_md5(real_dir):
    d = load_dataset(DatasetConfig(name="cifar10"), real_dir)
    src = np.load(NPZ / "cifar10" / "cifar10_exact_prefix.npz")
    assert (len(d.train_y), len(d.test_y), d.num_classes, d.image_size) == (1017, 1017, 10, 32)
    assert np.array_equal(d.train_x.numpy(), src["train_x_batch1"].transpose(0, 3, 1, 2))
    assert np.array_equal(d.test_x.numpy(), src["test_x"].transpose(0, 3, 1, 2))
    assert np.array_equal(d.train_y.numpy(), src["train_labels"][:1017])
    assert np.array_equal(d.test_y.numpy(), src["test_labels"][:1017])
    info = d.info
    assert info["official"] is False and info["complete"] is False
    assert info["source"] == str(real_dir / "cifar-10-batches-py")
    detail = info["official_detail"]
    assert set(detail) == {*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"}
    assert all(detail[f].startswith("md5 differs") for f in ("data_batch_1", "data_batch_5", "test_batch"))
    # materialize.py re-pickles batches.meta, so even that file is not the official one.
    assert "official 5ff9c542aee3614f3951f8cda6e48888" in detail["batches.meta"]
    torch.testing.assert_close(d.mean.flatten(), torch.tensor([0.5071, 0.4865, 0.4409]))


def test_official_when_every_md5_matches(real_dir, monkeypatch, tmp_path):
    root = copy_cifar10(real_dir, tmp_path) / "cifar-10-batches-py"
    from bench import datasets

    spec = datasets.get("cifar10")
    actual = {f: hashlib.md5((root / f).read_bytes()).hexdigest() for f in spec.md5}
    monkeypatch.setitem(datasets._datasets, "cifar10", dataclasses.replace(spec, md5=actual))
    d = load_dataset(DatasetConfig(name="cifar10"), tmp_path)
    assert d.info["official"] is True and set(d.info["official_detail"].values()) == {"md5 ok"}


def test_cifar100_partial(real_dir):
    d = load_dataset(DatasetConfig(name="cifar100"), real_dir)
    src = np.load(NPZ / "cifar100" / "cifar100_exact_prefix.npz")
    assert (len(d.train_y), len(d.test_y), d.num_classes) == (1117, 916, 100)
    assert np.array_equal(d.train_x.numpy(), src["train_x"].transpose(0, 3, 1, 2))
    assert np.array_equal(d.test_y.numpy(), src["test_fine_labels"][:916])
    assert d.info["official"] is False and set(d.info["official_detail"]) == {"train", "test", "meta"}
    assert d.info["complete"] is False


@pytest.mark.slow
def test_tinyimagenet_layout(tiny):
    from PIL import Image

    assert (len(tiny.train_y), len(tiny.test_y), tiny.num_classes, tiny.image_size) == (400, 10000, 200, 64)
    assert tiny.train_x.shape[1:] == (3, 64, 64)
    assert torch.bincount(tiny.train_y).tolist() == [2] * 200
    val = np.load(NPZ / "tinyimagenet" / "tinyimagenet200_val_jpeg.npz")
    assert np.array_equal(tiny.test_y.numpy(), val["labels"])           # val_0 .. val_9999 order
    for i in (0, 1, 9999):
        raw = val["jpeg"][val["offsets"][i]:val["offsets"][i + 1]].tobytes()
        ref = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB")).transpose(2, 0, 1)
        assert np.array_equal(tiny.test_x[i].numpy(), ref)
    assert tiny.info["official"] is False and tiny.info["complete"] is False
    assert data.TINY_MARKER in tiny.info["official_detail"]["tiny-imagenet-200.zip"]


@pytest.mark.slow
def test_tinyimagenet_marker_and_limit(real_dir, tiny):
    marker = real_dir / "tiny-imagenet-200" / data.TINY_MARKER
    marker.write_text(data.TINY_ZIP_MD5 + "\n")
    try:
        d = load_dataset(DatasetConfig(name="tinyimagenet", train_limit=200), real_dir)   # from the cache
    finally:
        marker.unlink()
    assert d.info["official"] is True
    assert len(d.train_y) == 200 and len(set(d.train_y.tolist())) > 100   # a prefix would give 100


def test_cache_hit_corrupt_cache_and_key_change(real_dir, tmp_path, monkeypatch):
    copy_cifar10(real_dir, tmp_path)
    first = load_dataset(DatasetConfig(name="cifar10"), tmp_path)
    cache = tmp_path / data.CACHE_DIRNAME
    files = sorted(p.name for p in cache.glob("*.pt"))
    assert len(files) == 2 and files[0].startswith("cifar10-test-") and files[1].startswith("cifar10-train-")

    real_decode = data._decode_cifar
    monkeypatch.setattr(data, "_decode_cifar", lambda *a: pytest.fail("decoded instead of using the cache"))
    second = load_dataset(DatasetConfig(name="cifar10"), tmp_path)
    assert torch.equal(first.train_x, second.train_x) and first.info == second.info

    (cache / files[1]).write_bytes(b"not a torch file")                   # corrupt: decode again
    monkeypatch.setattr(data, "_decode_cifar", real_decode)
    third = load_dataset(DatasetConfig(name="cifar10"), tmp_path)
    assert torch.equal(first.train_x, third.train_x)
    assert torch.load(cache / files[1], weights_only=True)["x"].shape == (1017, 3, 32, 32)

    src = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 10**9))
    load_dataset(DatasetConfig(name="cifar10"), tmp_path)
    now = sorted(p.name for p in cache.glob("*.pt"))
    assert now[0] == files[0] and now[1] != files[1] and len(now) == 2    # old key replaced


def test_unwritable_cache_is_skipped(real_dir, tmp_path):
    copy_cifar10(real_dir, tmp_path)
    (tmp_path / data.CACHE_DIRNAME).write_text("a file where the cache folder would go")
    d = load_dataset(DatasetConfig(name="cifar10"), tmp_path)
    assert len(d.train_y) == 1017


def test_missing_dataset_message(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset(DatasetConfig(name="cifar100"), tmp_path)
    msg = str(e.value)
    assert isinstance(e.value, FileNotFoundError)
    assert str(tmp_path / "cifar-100-python") in msg and "--download" in msg and "cifar-100-python/{train, test, meta}" in msg
    assert "../" not in msg          # never points at files outside this repository


def test_missing_file_and_corrupt_files(real_dir, tmp_path):
    root = copy_cifar10(real_dir, tmp_path) / "cifar-10-batches-py"
    (root / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match="data_batch_3"):
        load_dataset(DatasetConfig(name="cifar10"), tmp_path)
    (root / "data_batch_3").write_bytes(b"garbage, not a pickle")
    with pytest.raises(DatasetFileError, match="data_batch_3"):
        load_dataset(DatasetConfig(name="cifar10"), tmp_path)
    # A pickle that would call arbitrary code is refused, not executed.
    (root / "data_batch_3").write_bytes(pickle.dumps({"data": print, "labels": []}))
    with pytest.raises(DatasetFileError, match="not allowed"):
        load_dataset(DatasetConfig(name="cifar10"), tmp_path)


def py2_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """A CIFAR batch as Python 2 pickled it (the official files): str keys, which load as bytes."""
    def s(b: bytes) -> bytes:
        return b"U" + bytes([len(b)]) + b                       # SHORT_BINSTRING (a Python 2 str)
    raw = data.tobytes()
    dtype = (b"cnumpy\ndtype\n" + s(b"u1") + b"K\x00K\x01\x87R"
             + b"(K\x03" + s(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
    arr = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + s(b"b") + b"\x87R"
           + b"(K\x01M" + struct.pack("<H", data.shape[0]) + b"M" + struct.pack("<H", data.shape[1]) + b"\x86"
           + dtype + b"\x89T" + struct.pack("<I", len(raw)) + raw + b"tb")
    lab = b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    return b"\x80\x02}(" + s(b"data") + arr + s(b"labels") + lab + b"u."


def test_python2_pickle_with_bytes_keys(real_dir, tmp_path):
    root = copy_cifar10(real_dir, tmp_path) / "cifar-10-batches-py"
    src = np.load(NPZ / "cifar10" / "cifar10_exact_prefix.npz")
    x = src["train_x_batch1"][:20].transpose(0, 3, 1, 2)
    labels = [int(v) for v in src["train_labels"][:20]]
    assert pickle.loads(py2_pickle(x.reshape(20, -1), labels), encoding="bytes").keys() == {b"data", b"labels"}
    (root / "data_batch_1").write_bytes(py2_pickle(x.reshape(20, -1), labels))
    d = load_dataset(DatasetConfig(name="cifar10"), tmp_path)
    assert np.array_equal(d.train_x.numpy(), x) and d.train_y.tolist() == labels


def test_download_only_when_missing(real_dir, tmp_path, monkeypatch):
    import torchvision

    calls = []

    def fake_cifar10(root, download):
        calls.append(root)
        copy_cifar10(real_dir, Path(root))

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_cifar10)
    assert len(load_dataset(DatasetConfig(name="cifar10"), tmp_path, download=True).train_y) == 1017
    load_dataset(DatasetConfig(name="cifar10"), tmp_path, download=True)
    assert calls == [str(tmp_path)]


def test_tiny_download_writes_marker_and_decodes_grayscale(tmp_path, monkeypatch):
    from PIL import Image
    import torchvision.datasets.utils as tv_utils

    def fake_download(url, root, md5):
        assert url == data.TINY_URL and md5 == data.TINY_ZIP_MD5
        d = Path(root) / "tiny-imagenet-200"
        wnids = [f"n{i:08d}" for i in range(200)]
        (d / "val" / "images").mkdir(parents=True)
        (d / "wnids.txt").write_text("\n".join(wnids) + "\n")
        for i, w in enumerate(wnids):
            (d / "train" / w / "images").mkdir(parents=True)
            Image.new("RGB", (64, 64), (i, 0, 0)).save(d / "train" / w / "images" / f"{w}_0.JPEG")
        Image.new("L", (64, 64), 77).save(d / "val" / "images" / "val_10.JPEG")      # grayscale
        Image.new("RGB", (64, 64), (0, 0, 255)).save(d / "val" / "images" / "val_2.JPEG")
        (d / "val" / "val_annotations.txt").write_text(
            f"val_10.JPEG\t{wnids[5]}\t0\t0\t63\t63\nval_2.JPEG\t{wnids[9]}\t1\t1\t60\t60\n")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    d = load_dataset(DatasetConfig(name="tinyimagenet"), tmp_path, download=True)
    assert d.info["official"] is True and len(d.train_y) == 200
    assert d.test_y.tolist() == [9, 5]                                  # natural order: val_2, val_10
    assert d.test_x.shape == (2, 3, 64, 64) and torch.all((d.test_x[1] - 77).abs() <= 2)


def test_class_subset_view_relabels_without_reloading():
    d = small(num_classes=6)
    part = d.subset_classes([3, 4, 5])
    assert part.num_classes == 3 and part.train_x.device == d.train_x.device
    keep = (d.train_y >= 3)
    assert torch.equal(part.train_x, d.train_x[keep]) and torch.equal(part.train_y, d.train_y[keep] - 3)
    assert torch.equal(part.test_y, d.test_y[d.test_y >= 3] - 3)
    assert part.info["classes"] == [3, 4, 5] and part.info["fingerprint"] != d.info["fingerprint"]
    batch = next(part.train_batches(8, NO_AUG, make_generator(0)))
    assert int(batch.y.max()) < 3
    with pytest.raises(ValueError, match="distinct ids"):
        d.subset_classes([0, 0])


def test_train_view_re_augments_given_samples():
    d = small()
    idx = torch.tensor([0, 5, 7])
    plain = d.train_view(idx, NO_AUG, make_generator(0))
    assert torch.equal(plain, d.normalize(d.train_x[idx]))
    aug = AugmentConfig(crop_padding=2, flip=True)
    a, b = d.train_view(idx, aug, make_generator(1)), d.train_view(idx, aug, make_generator(2))
    assert a.shape == plain.shape and not torch.equal(a, b)
