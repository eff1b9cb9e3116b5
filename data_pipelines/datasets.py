"""Datasets as uint8 tensors that can live on the GPU: CIFAR-10/100 (official binary version,
verified), image folders of JPEG/PNG files, and a structured synthetic generator.

CIFAR binary format (https://www.cs.toronto.edu/~kriz/cifar.html): fixed-size records of
label byte(s) followed by 3072 pixel bytes, the R, G and B 32x32 planes in row-major order.
CIFAR-10 records have 1 label byte; CIFAR-100 records have 2 (coarse, then fine). The bytes
are parsed with numpy; nothing is ever unpickled.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import struct
import tarfile
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

DATA_ENV = "SSLFAST_DATA"
PIXELS = 3 * 32 * 32


class DatasetError(RuntimeError):
    """A dataset file is missing, truncated or fails its checksum."""


@dataclass
class ImageDataset:
    """A whole dataset as tensors: ``images`` uint8 (N, 3, H, W), ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    coarse_labels: torch.Tensor | None = None
    coarse_classes: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] != 3:
            raise ValueError(
                f"images must be uint8 of shape (N, 3, H, W), got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must have shape ({self.images.shape[0]},), got {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i):
        return self.images[i], self.labels[i]

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device, non_blocking: bool = False) -> ImageDataset:
        """The dataset resident on ``device`` (CIFAR-10 train is 150 MiB of uint8)."""
        move = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)  # noqa: E731
        return replace(self, images=move(self.images), labels=move(self.labels), coarse_labels=move(self.coarse_labels))

    def batches(self, batch_size: int, shuffle: bool = True, generator: torch.Generator | None = None,
                drop_last: bool = True):
        """Yield (images, labels) batches by indexing the resident tensors (no DataLoader)."""
        n = len(self)
        order = (torch.randperm(n, generator=generator, device=generator.device if generator else "cpu")
                 if shuffle else torch.arange(n)).to(self.device)
        stop = n - n % batch_size if drop_last else n
        for s in range(0, stop, batch_size):
            idx = order[s:s + batch_size]
            yield self.images[idx], self.labels[idx]


# ---------------------------------------------------------------------------------------------
# CIFAR
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CifarSpec:
    name: str
    dirname: str
    url: str
    tar_md5: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_bytes: int
    records: dict = field(hash=False)  # file -> record count
    sha256: dict | None = field(default=None, hash=False)  # official sums, when known offline
    classes_file: str = ""
    coarse_classes_file: str | None = None
    label_limits: tuple[int, ...] = (10,)  # per label byte: the number of classes it indexes

    @property
    def record_bytes(self) -> int:
        return self.label_bytes + PIXELS


CIFAR10 = CifarSpec(
    name="cifar10",
    dirname="cifar-10-batches-bin",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    tar_md5="c32a1d4ab5d03f1284b67883e8d87530",  # published on the CIFAR page
    train_files=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    test_files=("test_batch.bin",),
    label_bytes=1,
    records={**{f"data_batch_{i}.bin": 10000 for i in range(1, 6)}, "test_batch.bin": 10000},
    # sha256 of the files inside the official cifar-10-binary.tar.gz
    sha256={
        "data_batch_1.bin": "cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5",
        "data_batch_2.bin": "a591ca11fa1708a91ee40f54b3da4784ccd871ecf2137de63f51ada8b3fa57ed",
        "data_batch_3.bin": "bbe8596564c0f86427f876058170b84dac6670ddf06d79402899d93ceea26f67",
        "data_batch_4.bin": "014e562d6e23c72197cc727519169a60359f5eccd8945ad5a09d710285ff4e48",
        "data_batch_5.bin": "755304fc0b379caeae8c14f0dac912fbc7d6cd469eb67a1029a08a39453a9add",
        "test_batch.bin": "8e2eb146ae340b09e24670f29cabc6326dba54da8789dab6768acf480273f65b",
    },
    classes_file="batches.meta.txt",
)

CIFAR100 = CifarSpec(
    name="cifar100",
    dirname="cifar-100-binary",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
    tar_md5="03b5dce01913d631647c71ecec9e9cb8",
    train_files=("train.bin",),
    test_files=("test.bin",),
    label_bytes=2,
    records={"train.bin": 50000, "test.bin": 10000},
    sha256=None,  # no official per-file sums; see _expected_sums
    classes_file="fine_label_names.txt",
    coarse_classes_file="coarse_label_names.txt",
    label_limits=(20, 100),  # coarse, then fine
)

SPECS = {"cifar10": CIFAR10, "cifar100": CIFAR100}
SUMS_FILE = "SHA256SUMS"

# (path, size, mtime_ns) -> sha256, so repeated loads in one process hash each file once
_sha_cache: dict[tuple, str] = {}


def sha256_file(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _sha_cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _sha_cache[key] = h.hexdigest()
    return _sha_cache[key]


def _read_sums(path: Path) -> dict[str, str]:
    sums = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def resolve_root(root: str | os.PathLike | None) -> Path:
    """``root``, else ``$SSLFAST_DATA``; either may be the dataset folder itself or its parent."""
    if root is None:
        env = os.environ.get(DATA_ENV)
        if not env:
            raise DatasetError(
                f"no dataset location: pass root=... or set {DATA_ENV} to the folder that holds "
                "cifar-10-batches-bin/ (or cifar-100-binary/)"
            )
        root = env
    return Path(root).expanduser()


def _dataset_dir(spec: CifarSpec, root: Path) -> Path:
    if root.name == spec.dirname or (root / spec.train_files[0]).exists():
        return root
    return root / spec.dirname


def _expected_sums(spec: CifarSpec, folder: Path) -> dict[str, str] | None:
    """Official sums for CIFAR-10 (built in). CIFAR-100 has none offline: use the SHA256SUMS
    that ``download`` writes after checking the official tarball md5, when present."""
    if spec.sha256 is not None:
        return spec.sha256
    sums = folder / SUMS_FILE
    return _read_sums(sums) if sums.is_file() else None


def _check_file(spec: CifarSpec, path: Path, sums: dict[str, str] | None, verify: bool) -> None:
    expected_sum = (sums or {}).get(path.name)
    if not path.is_file():
        raise DatasetError(
            f"{spec.name}: missing file {path} (expected sha256 {expected_sum or 'unknown'}); "
            f"pass download=True, or root=/ set {DATA_ENV} to the folder holding {spec.dirname}/"
        )
    expected_size = spec.records[path.name] * spec.record_bytes
    size = path.stat().st_size
    if size != expected_size:
        actual = sha256_file(path)
        raise DatasetError(
            f"{spec.name}: {path} is truncated or corrupt: {size} bytes, expected {expected_size} "
            f"({spec.records[path.name]} records of {spec.record_bytes} bytes); "
            f"sha256 expected {expected_sum or 'unknown'}, actual {actual}"
        )
    if verify and expected_sum is not None:
        actual = sha256_file(path)
        if actual != expected_sum:
            raise DatasetError(
                f"{spec.name}: checksum mismatch for {path}: expected sha256 {expected_sum}, actual {actual} "
                "(corrupt file; delete it and download again)"
            )


def _parse(spec: CifarSpec, path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, spec.record_bytes)
    images = raw[:, spec.label_bytes:].reshape(-1, 3, 32, 32)
    labels = raw[:, :spec.label_bytes]
    _check_labels(spec, path, labels)
    return images, labels


def _check_labels(spec: CifarSpec, path: Path, labels: np.ndarray) -> None:
    """Every label byte indexes a class. Always checked (a sha256 match implies it, but
    ``verify=False`` or a CIFAR-100 folder without sums would otherwise let a corrupt byte through
    as an out-of-range class index)."""
    for j, limit in enumerate(spec.label_limits):
        bad = np.flatnonzero(labels[:, j] >= limit)
        if bad.size:
            which = ("coarse ", "fine ")[j] if len(spec.label_limits) > 1 else ""
            raise DatasetError(
                f"{spec.name}: {path} is corrupt: record {int(bad[0])} has {which}label {int(labels[bad[0], j])}, "
                f"expected 0..{limit - 1} ({bad.size} such record(s)); delete the file and download it again"
            )


def _read_classes(folder: Path, name: str | None, n: int) -> tuple[str, ...]:
    if name and (folder / name).is_file():
        names = tuple(s.strip() for s in (folder / name).read_text().splitlines() if s.strip())
        if len(names) == n:
            return names
    return tuple(str(i) for i in range(n))


def load_cifar(name: str, root=None, train: bool = True, download: bool = False, verify: bool = True) -> ImageDataset:
    """CIFAR-10 or CIFAR-100 from the official binary version, as an ``ImageDataset`` on the CPU."""
    if name not in SPECS:
        raise ValueError(f"name must be one of {sorted(SPECS)}, got {name!r}")
    spec = SPECS[name]
    base = resolve_root(root)
    folder = _dataset_dir(spec, base)
    files = spec.train_files if train else spec.test_files
    if download and not all((folder / f).is_file() for f in files):
        folder = download_cifar(name, base if folder == base / spec.dirname else folder.parent)
    sums = _expected_sums(spec, folder) if verify else None
    parts = []
    for f in files:
        _check_file(spec, folder / f, sums, verify)
        parts.append(_parse(spec, folder / f))
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts]).astype(np.int64)
    if name == "cifar10":
        return ImageDataset(torch.from_numpy(images), torch.from_numpy(labels[:, 0]),
                            _read_classes(folder, spec.classes_file, 10))
    return ImageDataset(torch.from_numpy(images), torch.from_numpy(labels[:, 1].copy()),
                        _read_classes(folder, spec.classes_file, 100),
                        coarse_labels=torch.from_numpy(labels[:, 0].copy()),
                        coarse_classes=_read_classes(folder, spec.coarse_classes_file, 20))


def load_cifar10(root=None, train: bool = True, download: bool = False, verify: bool = True) -> ImageDataset:
    """CIFAR-10: 50,000 train / 10,000 test images, sha256-verified against the official sums."""
    return load_cifar("cifar10", root, train, download, verify)


def load_cifar100(root=None, train: bool = True, download: bool = False, verify: bool = True) -> ImageDataset:
    """CIFAR-100 with fine labels (``coarse_labels`` too); sizes and record counts are checked,
    and sha256 sums when a SHA256SUMS file (written by ``download``) is present."""
    return load_cifar("cifar100", root, train, download, verify)


def _fetch(url: str, dest, timeout: float = 60.0) -> None:
    """Stream ``url`` into the open binary file ``dest`` (the one place that touches the network)."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (fixed https URL)
        shutil.copyfileobj(resp, dest, length=1 << 20)


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def download_cifar(name: str, root) -> Path:
    """Fetch the official tarball into ``root``, check its md5, extract atomically.

    The tarball is written to a temporary file and renamed into place only when its md5
    matches the published one; the extracted folder appears by a single rename. A SHA256SUMS
    of the extracted files is written so later loads can verify them. Returns the folder.
    """
    spec = SPECS[name]
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    tar_path = root / Path(spec.url).name
    if not (tar_path.is_file() and _md5(tar_path) == spec.tar_md5):
        fd, tmp = tempfile.mkstemp(prefix=f".{tar_path.name}.", suffix=".part", dir=root)
        try:
            with os.fdopen(fd, "wb") as f:
                _fetch(spec.url, f)
            actual = _md5(Path(tmp))
            if actual != spec.tar_md5:
                raise DatasetError(
                    f"{spec.name}: download of {spec.url} failed its checksum: expected md5 {spec.tar_md5}, "
                    f"actual {actual}; nothing was written to {tar_path}"
                )
            os.replace(tmp, tar_path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    folder = root / spec.dirname
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.dirname}.", dir=root))
    try:
        with tarfile.open(tar_path, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.isfile() and Path(m.name).parent.name == spec.dirname]
            for m in members:
                if Path(m.name).is_absolute() or ".." in Path(m.name).parts:
                    raise DatasetError(f"{tar_path}: unsafe member path {m.name!r}")
            tar.extractall(staging, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        extracted = staging / spec.dirname
        names = sorted(p.name for p in extracted.iterdir() if p.is_file())
        (extracted / SUMS_FILE).write_text("".join(f"{sha256_file(extracted / n)}  {n}\n" for n in names))
        if spec.sha256 is not None:
            for f, expected in spec.sha256.items():
                actual = sha256_file(extracted / f)
                if actual != expected:
                    raise DatasetError(f"{spec.name}: extracted {f} has sha256 {actual}, expected {expected}")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(extracted, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


# ---------------------------------------------------------------------------------------------
# Image folders
# ---------------------------------------------------------------------------------------------

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_GRAY16 = ("I;16", "I;16B", "I;16L", "I;16N")


def _to_rgb8(im, path):
    """A decoded PIL image as 8-bit RGB. 16-bit grayscale is scaled (round(v/257)), never clipped;
    PIL reduces 16-bit RGB(A) and gray+alpha PNGs to 8 bit itself. 32-bit integer pixels are
    accepted only within 0..65535 (how older Pillow versions open 16-bit grayscale PNGs)."""
    from PIL import Image

    if im.mode in _GRAY16 or im.mode == "I":
        v = np.asarray(im)
        if im.mode == "I" and v.size and (v.min() < 0 or v.max() > 65535):
            raise DatasetError(
                f"image {path} has 32-bit integer pixels in [{v.min()}, {v.max()}]: only 8- and 16-bit images "
                "are supported"
            )
        gray = np.rint(v.astype(np.float64) / 257.0).astype(np.uint8)
        return Image.fromarray(np.repeat(gray[..., None], 3, axis=2), mode="RGB")
    if im.mode == "F":
        raise DatasetError(
            f"image {path} has floating-point pixels (PIL mode F): only 8- and 16-bit images are supported"
        )
    return im.convert("RGB")


class ImageFolder:
    """``root/<class>/<image>.{jpg,jpeg,png}``; classes sorted by name, as torchvision does.

    Indexing decodes one file with PIL into a uint8 (3, H, W) tensor. ``load(size)`` decodes
    everything, resized (shorter side, then central square) to ``size``, as an ``ImageDataset``
    that can sit on the GPU. For large folders use ``sslfast.data_pipelines.dali``.
    """

    def __init__(self, root, extensions: tuple[str, ...] = IMAGE_EXTENSIONS):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        self.classes = tuple(sorted(d.name for d in self.root.iterdir() if d.is_dir()))
        if not self.classes:
            raise DatasetError(f"image folder {self.root} has no class subfolders")
        exts = tuple(e.lower() for e in extensions)
        self.samples: list[tuple[Path, int]] = [
            (p, label)
            for label, c in enumerate(self.classes)
            for p in sorted((self.root / c).rglob("*"))
            if p.is_file() and p.suffix.lower() in exts
        ]
        if not self.samples:
            raise DatasetError(f"image folder {self.root} has no files with extensions {exts}")

    def __len__(self) -> int:
        return len(self.samples)

    @staticmethod
    def decode(path, size: int | None = None) -> torch.Tensor:
        """One file as uint8 (3, H, W); ``size``: shorter side resized to it, then the central square.

        Any colour mode becomes RGB as torchvision's loader does (``convert("RGB")``: alpha dropped,
        palettes expanded), except 16-bit grayscale (PIL mode ``I;16``), which PIL would clip to 255:
        it is scaled to 8 bit as round(v / 257). A file that cannot be decoded (truncated, corrupt,
        not an image, a decompression bomb past PIL's pixel limit) raises a ``DatasetError`` naming it.
        """
        from PIL import Image

        try:
            with Image.open(path) as im:
                im = _to_rgb8(im, path)
                if size is not None:
                    w, h = im.size
                    s = size / min(w, h)
                    im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
                    w, h = im.size
                    left, top = (w - size) // 2, (h - size) // 2
                    im = im.crop((left, top, left + size, top + size))
                arr = np.asarray(im, dtype=np.uint8)
        except Image.DecompressionBombError as e:
            raise DatasetError(
                f"image {path} is too large to decode safely: {e} (PIL.Image.MAX_IMAGE_PIXELS guards against "
                "decompression bombs; raise it only for files you trust)"
            ) from None
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as e:
            raise DatasetError(f"cannot decode image {path}: {e} (truncated, corrupt or not an image)") from e
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        return self.decode(path), label

    def load(self, size: int) -> ImageDataset:
        images = torch.stack([self.decode(p, size) for p, _ in self.samples])
        labels = torch.tensor([label for _, label in self.samples], dtype=torch.int64)
        return ImageDataset(images, labels, self.classes)


# ---------------------------------------------------------------------------------------------
# Synthetic data
# ---------------------------------------------------------------------------------------------

SHAPES = ("disc", "square", "triangle", "ring", "cross", "h-stripes", "v-stripes", "checker", "diagonal", "diamond")


def make_synthetic(n: int, num_classes: int = 10, image_size: int = 32, seed: int = 0) -> ImageDataset:
    """Structured images whose class decides the shape (10 kinds) and the hue of the object.

    Each image: a random smooth background, one object of its class's shape at a random
    position and scale, with a class hue (jittered) and pixel noise. Deterministic for a
    seed. Classes beyond 10 reuse shapes with shifted hues.
    """
    if n < 1 or num_classes < 1 or image_size < 8:
        raise ValueError(f"need n >= 1, num_classes >= 1, image_size >= 8; got {n}, {num_classes}, {image_size}")
    rng = np.random.default_rng(seed)
    s = image_size
    labels = np.arange(n) % num_classes
    rng.shuffle(labels)
    yy, xx = np.meshgrid(np.arange(s, dtype=np.float32), np.arange(s, dtype=np.float32), indexing="ij")
    cy = rng.uniform(0.3, 0.7, n).astype(np.float32)[:, None, None] * s
    cx = rng.uniform(0.3, 0.7, n).astype(np.float32)[:, None, None] * s
    rad = rng.uniform(0.18, 0.35, n).astype(np.float32)[:, None, None] * s
    dy, dx = (yy[None] - cy) / rad, (xx[None] - cx) / rad
    r = np.sqrt(dx**2 + dy**2)
    inside = (np.abs(dx) <= 1) & (np.abs(dy) <= 1)
    period = rng.uniform(3, 6, n).astype(np.float32)[:, None, None]
    masks = np.stack([
        r <= 1,
        inside,
        (dy <= 1) & (dy >= -1) & (np.abs(dx) <= (dy + 1) / 2),
        (r <= 1) & (r >= 0.55),
        inside & ((np.abs(dx) <= 0.3) | (np.abs(dy) <= 0.3)),
        inside & ((yy[None] // period) % 2 == 0),
        inside & ((xx[None] // period) % 2 == 0),
        inside & (((yy[None] // period) + (xx[None] // period)) % 2 == 0),
        inside & (((yy[None] + xx[None]) // period) % 2 == 0),
        np.abs(dx) + np.abs(dy) <= 1,
    ])  # (10, n, s, s)
    shape = labels % len(SHAPES)
    mask = masks[shape, np.arange(n)]
    hue = (labels * 0.61803398875 + rng.normal(0, 0.03, n)) % 1.0
    sat = rng.uniform(0.6, 1.0, n)
    val = rng.uniform(0.7, 1.0, n)
    obj = _hsv_to_rgb_np(hue, sat, val)  # (n, 3)
    bg0 = rng.uniform(0.0, 0.5, (n, 3))
    bg1 = rng.uniform(0.0, 0.5, (n, 3))
    t = (xx[None] * rng.uniform(-1, 1, (n, 1, 1)) + yy[None] * rng.uniform(-1, 1, (n, 1, 1))) / (2 * s) + 0.5
    bg = bg0[:, :, None, None] * (1 - t[:, None]) + bg1[:, :, None, None] * t[:, None]
    img = np.where(mask[:, None], obj[:, :, None, None], bg)
    img = img + rng.normal(0, 0.03, img.shape)
    images = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    classes = tuple(f"{SHAPES[c % len(SHAPES)]}-{c}" for c in range(num_classes))
    return ImageDataset(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)), classes)


def _hsv_to_rgb_np(h, s, v):
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack([np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    return table[i, np.arange(len(h))]
