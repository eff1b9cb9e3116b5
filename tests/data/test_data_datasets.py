"""Datasets: the real CIFAR-10 files, corruption and truncation errors, CIFAR-100 parsing,
download (mocked fetch), image folders, synthetic data."""

import dataclasses
import hashlib
import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from sslfast.data_pipelines import ImageFolder, load_cifar10, load_cifar100, make_synthetic
from sslfast.data_pipelines import datasets as ds

REPO = Path(__file__).resolve().parents[2]


def cifar10_dir() -> Path | None:
    for cand in (os.environ.get(ds.DATA_ENV), REPO.parent / "shared" / "data"):
        if cand and (Path(cand) / "cifar-10-batches-bin" / "test_batch.bin").is_file():
            return Path(cand) / "cifar-10-batches-bin"
    return None


CIFAR = cifar10_dir()
needs_cifar = pytest.mark.skipif(
    CIFAR is None, reason="CIFAR-10 binary files not found in $SSLFAST_DATA or ../shared/data"
)

# The first labels of the official files (read from the bytes below before being trusted).
FIRST_TRAIN = [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
FIRST_TEST = [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]


@pytest.fixture(scope="module")
def cifar_train():
    return load_cifar10(CIFAR.parent, train=True)


@needs_cifar
def test_cifar10_train_counts_labels_and_bytes(cifar_train):
    d = cifar_train
    assert d.images.shape == (50000, 3, 32, 32) and d.images.dtype == torch.uint8
    assert d.labels.dtype == torch.int64 and d.labels.shape == (50000,)
    assert torch.bincount(d.labels).tolist() == [5000] * 10
    assert d.classes == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    raw = (CIFAR / "data_batch_1.bin").read_bytes()
    assert [raw[i * 3073] for i in range(10)] == FIRST_TRAIN  # the file agrees with the known values
    assert d.labels[:10].tolist() == FIRST_TRAIN
    # record 0: label byte, then R, G, B planes row-major
    assert d.images[0].flatten().tolist()[:50] == list(raw[1:51])
    raw5 = (CIFAR / "data_batch_5.bin").read_bytes()
    assert d.labels[-1].item() == raw5[-3073] and bytes(d.images[-1].flatten().tolist()) == raw5[-3072:]


@needs_cifar
def test_cifar10_test_split_via_env(monkeypatch):
    monkeypatch.setenv(ds.DATA_ENV, str(CIFAR.parent))
    d = load_cifar10(train=False)
    assert len(d) == 10000 and torch.bincount(d.labels).tolist() == [1000] * 10
    raw = (CIFAR / "test_batch.bin").read_bytes()
    assert [raw[i * 3073] for i in range(10)] == FIRST_TEST
    assert d.labels[:10].tolist() == FIRST_TEST
    # the official sums verify (and the root may be the batches folder itself)
    sums = ds._read_sums(CIFAR / "SHA256SUMS")
    assert ds.sha256_file(CIFAR / "test_batch.bin") == ds.CIFAR10.sha256["test_batch.bin"] == sums["test_batch.bin"]
    assert torch.equal(load_cifar10(CIFAR, train=False).labels, d.labels)


@needs_cifar
def test_cifar10_corrupt_truncated_missing(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    data = bytearray((CIFAR / "test_batch.bin").read_bytes())
    data[5000] ^= 0xFF
    (folder / "test_batch.bin").write_bytes(bytes(data))
    expected = ds.CIFAR10.sha256["test_batch.bin"]
    actual = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(ds.DatasetError) as e:
        load_cifar10(tmp_path, train=False)
    msg = str(e.value)
    assert str(folder / "test_batch.bin") in msg and expected in msg and actual in msg
    # verify=False trusts the bytes
    assert len(load_cifar10(tmp_path, train=False, verify=False)) == 10000

    (folder / "test_batch.bin").write_bytes(bytes(data[: 3073 * 100 + 7]))
    with pytest.raises(ds.DatasetError, match=r"truncated.*307307 bytes, expected 30730000") as e:
        load_cifar10(tmp_path, train=False)
    assert expected in str(e.value)

    with pytest.raises(ds.DatasetError) as e:
        load_cifar10(tmp_path, train=True)
    assert str(folder / "data_batch_1.bin") in str(e.value) and ds.CIFAR10.sha256["data_batch_1.bin"] in str(e.value)


def test_no_location(monkeypatch):
    monkeypatch.delenv(ds.DATA_ENV, raising=False)
    with pytest.raises(ds.DatasetError, match="SSLFAST_DATA"):
        load_cifar10()


# ----------------------------------------------------------------------------- CIFAR-100 and download


def fake_cifar100(n_train=30, n_test=10, seed=0):
    rng = np.random.default_rng(seed)

    def records(n):
        rec = rng.integers(0, 256, (n, 3074), dtype=np.uint8)
        rec[:, 0] = rng.integers(0, 20, n)
        rec[:, 1] = rng.integers(0, 100, n)
        return rec

    return records(n_train), records(n_test)


@pytest.fixture
def small_cifar100(monkeypatch):
    spec = dataclasses.replace(ds.CIFAR100, records={"train.bin": 30, "test.bin": 10})
    monkeypatch.setitem(ds.SPECS, "cifar100", spec)
    return spec


def write_fake_cifar100(folder: Path):
    folder.mkdir(parents=True)
    tr, te = fake_cifar100()
    (folder / "train.bin").write_bytes(tr.tobytes())
    (folder / "test.bin").write_bytes(te.tobytes())
    (folder / "fine_label_names.txt").write_text("".join(f"fine{i}\n" for i in range(100)))
    (folder / "coarse_label_names.txt").write_text("".join(f"coarse{i}\n" for i in range(20)))
    return tr, te


def test_cifar100_parse_fine_and_coarse(tmp_path, small_cifar100):
    tr, _ = write_fake_cifar100(tmp_path / "cifar-100-binary")
    d = load_cifar100(tmp_path)
    assert d.images.shape == (30, 3, 32, 32)
    assert d.labels.tolist() == tr[:, 1].tolist() and d.coarse_labels.tolist() == tr[:, 0].tolist()
    assert bytes(d.images[3].flatten().tolist()) == tr[3, 2:].tobytes()
    assert d.classes[7] == "fine7" and d.coarse_classes[19] == "coarse19"
    with open(tmp_path / "cifar-100-binary" / "test.bin", "ab") as f:
        f.write(b"x")
    with pytest.raises(ds.DatasetError, match=r"truncated or corrupt: 30741 bytes, expected 30740"):
        load_cifar100(tmp_path, train=False)


def make_tarball(dirname: str, files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{dirname}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_download_verifies_md5_and_is_atomic(tmp_path, monkeypatch, small_cifar100):
    tr, te = fake_cifar100()
    blob = make_tarball("cifar-100-binary", {"train.bin": tr.tobytes(), "test.bin": te.tobytes()})
    calls = []

    def fake_fetch(url, dest, timeout=60.0):
        calls.append(url)
        dest.write(blob)

    monkeypatch.setattr(ds, "_fetch", fake_fetch)
    # the official md5 rejects our fake tarball, and nothing is left behind
    with pytest.raises(ds.DatasetError, match=r"expected md5 03b5dce01913d631647c71ecec9e9cb8, actual"):
        load_cifar100(tmp_path, download=True)
    assert calls == ["https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"]
    assert list(tmp_path.iterdir()) == []

    monkeypatch.setitem(
        ds.SPECS, "cifar100", dataclasses.replace(small_cifar100, tar_md5=hashlib.md5(blob).hexdigest())
    )
    d = load_cifar100(tmp_path, download=True)
    assert d.labels.tolist() == tr[:, 1].tolist()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-100-binary", "cifar-100-binary.tar.gz"]
    sums = ds._read_sums(tmp_path / "cifar-100-binary" / ds.SUMS_FILE)
    assert sums["train.bin"] == hashlib.sha256(tr.tobytes()).hexdigest()
    # later loads verify against the sums written at download time
    p = tmp_path / "cifar-100-binary" / "test.bin"
    data = bytearray(p.read_bytes())
    data[100] ^= 1
    p.write_bytes(bytes(data))
    with pytest.raises(ds.DatasetError, match="checksum mismatch") as e:
        load_cifar100(tmp_path, train=False)
    assert sums["test.bin"] in str(e.value)
    assert len(calls) == 2


def test_cifar10_download_rejects_wrong_tarball(tmp_path, monkeypatch):
    monkeypatch.setattr(ds, "_fetch", lambda url, dest, timeout=60.0: dest.write(b"not a tarball"))
    with pytest.raises(
        ds.DatasetError,
        match=r"cifar-10-binary.tar.gz failed its checksum: expected md5 "
        r"c32a1d4ab5d03f1284b67883e8d87530",
    ):
        load_cifar10(tmp_path, download=True)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- image folder, synthetic


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    arrays = {}
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(3):
            a = rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)
            arrays[(c, i)] = a
            Image.fromarray(a).save(tmp_path / c / f"{i}.png")
    Image.fromarray(arrays[("dog", 0)]).save(tmp_path / "dog" / "x.jpg", quality=95)
    (tmp_path / "dog" / "notes.txt").write_text("ignored")
    folder = ImageFolder(tmp_path)
    assert folder.classes == ("cat", "dog") and len(folder) == 7
    img, label = folder[1]
    assert label == 0 and img.dtype == torch.uint8 and img.shape == (3, 21, 30)
    assert torch.equal(img, torch.from_numpy(arrays[("cat", 1)]).permute(2, 0, 1))  # PNG is lossless
    d = folder.load(16)
    assert d.images.shape == (7, 3, 16, 16) and d.labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "missing")


def test_synthetic_is_deterministic_and_class_dependent():
    a, b = make_synthetic(200, seed=4), make_synthetic(200, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(make_synthetic(200, seed=5).images, a.images)
    assert torch.bincount(a.labels).tolist() == [20] * 10

    # not noise: a nearest-centroid classifier on 8x8 thumbnails beats chance by far
    def feats(d):
        return torch.nn.functional.avg_pool2d(d.images.float(), 4).flatten(1)

    train, test = make_synthetic(2000, seed=0), make_synthetic(500, seed=1)
    ft, fe = feats(train), feats(test)
    cent = torch.stack([ft[train.labels == c].mean(0) for c in range(10)])
    pred = torch.cdist(fe, cent).argmin(1)
    assert (pred == test.labels).float().mean() > 0.5


def test_dataset_to_and_batches():
    d = make_synthetic(10, seed=0)
    assert d.to("cpu").images.device.type == "cpu"
    g = torch.Generator().manual_seed(0)
    batches = list(d.batches(4, generator=g))
    assert len(batches) == 2 and all(x.shape == (4, 3, 32, 32) for x, _ in batches)
    seen = torch.cat([y for _, y in d.batches(4, shuffle=False, drop_last=False)])
    assert torch.equal(seen, d.labels)
    with pytest.raises(ValueError, match="uint8"):
        ds.ImageDataset(d.images.float(), d.labels, d.classes)
