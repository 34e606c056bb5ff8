"""Datasets in tllib's shape: domains of (relative path, label) lists, PROTOCOL.md splits, a decoded cache.

Supported layouts
- ``Office31``: tllib's layout ``<root>/<domain>/images/<class>/*.jpg`` (+ optional ``image_list/<domain>.txt``).
- ``OfficeHome``, ``DomainNet``, ``VisDA2017``: tllib's layouts ``<root>/<domain>/<class>/*`` (+ optional
  ``image_list/``: ``<domain>.txt``; DomainNet ``<domain>_train.txt`` and ``<domain>_test.txt``).
- ``OfficeCaltech``: folder-per-class, one folder per domain (``amazon dslr webcam caltech``).
- ``Digits``: the embedded default (scikit-learn digits -> MNIST-M-style target), made on first use.
- ``Custom``: any folder with one sub-folder per domain and one sub-sub-folder per class.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator, Optional, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .image_cache import MappedImages, decode_image, load_decoded  # noqa: F401 - decode_image: the datasets API
from .utils import atomic_write_text, fail

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}

Item = tuple[str, int]  # (path relative to the dataset root, label)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    domains: dict[str, str]  # letter -> folder name
    layout: str  # "office31" (<domain>/images/<class>) or "folders" (<domain>/<class>)
    image_lists: tuple[str, ...] = ()  # tllib's lists of a domain under image_list/ ("{domain}": its folder)
    # tllib numbers the classes of these lists in its own order, not the sorted folder names': the class is then
    # read from each path's class folder (Office-31's numbers are the sorted folders' and are read as they are)
    class_from_path: bool = False


DATASETS: dict[str, DatasetSpec] = {
    "Office31": DatasetSpec("Office31", {"A": "amazon", "D": "dslr", "W": "webcam"}, "office31", ("{domain}.txt",)),
    "OfficeHome": DatasetSpec("OfficeHome", {"Ar": "Art", "Cl": "Clipart", "Pr": "Product", "Rw": "Real_World"},
                              "folders", ("{domain}.txt",), class_from_path=True),
    "DomainNet": DatasetSpec("DomainNet", {"c": "clipart", "i": "infograph", "p": "painting", "q": "quickdraw",
                                           "r": "real", "s": "sketch"},
                             "folders", ("{domain}_train.txt", "{domain}_test.txt"), class_from_path=True),
    "VisDA2017": DatasetSpec("VisDA2017", {"T": "train", "V": "validation"}, "folders", ("{domain}.txt",),
                             class_from_path=True),
    "OfficeCaltech": DatasetSpec(
        "OfficeCaltech", {"A": "amazon", "D": "dslr", "W": "webcam", "C": "caltech"}, "folders"
    ),
    "Digits": DatasetSpec("Digits", {"S": "digits", "M": "digits_m"}, "folders"),
    "Custom": DatasetSpec("Custom", {}, "folders"),
}


def dataset_spec(name: str, root: str | os.PathLike) -> DatasetSpec:
    if name not in DATASETS:
        fail(f"unknown dataset '{name}' (-d); choose from {', '.join(DATASETS)}")
    spec = DATASETS[name]
    if name == "Custom":  # every sub-folder is a domain, named by itself
        root = Path(root)
        if not root.is_dir():
            fail(f"dataset root '{root}' does not exist")
        doms = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        spec = DatasetSpec("Custom", {d: d for d in doms}, "folders")
    return spec


def domain_folder(spec: DatasetSpec, domain: str) -> str:
    if domain in spec.domains:
        return spec.domains[domain]
    if domain in spec.domains.values():
        return domain
    choices = ", ".join(f"{k} ({v})" for k, v in spec.domains.items())
    fail(f"unknown domain '{domain}' for dataset {spec.name}; choose from {choices}")
    raise AssertionError


def domain_letter(spec: DatasetSpec, domain: str) -> str:
    folder = domain_folder(spec, domain)
    return next((k for k, v in spec.domains.items() if v == folder), folder)


# ----------------------------------------------------------------------------- listing
def _class_dirs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    """Image files under ``folder``, following symlinked sub-folders (os.walk, not rglob, which does not)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath) / f for f in filenames if Path(f).suffix.lower() in IMAGE_EXTS]
    return sorted(p for p in out if p.is_file())


def class_folder_root(root: Path, spec: DatasetSpec, domain: str) -> Path:
    folder = root / domain_folder(spec, domain)
    if spec.layout == "office31":
        folder = folder / "images"
    if not folder.is_dir():
        fail(f"domain folder '{folder}' does not exist (check the dataset root and -s/-t)")
    return folder


def list_domain(root: str | os.PathLike, spec: DatasetSpec, domain: str) -> tuple[list[Item], list[str]]:
    """All (relative path, label) items of a domain and its class names (sorted folder names)."""
    root = Path(root)
    if not root.is_dir():
        fail(f"dataset root '{root}' does not exist")
    folder = class_folder_root(root, spec, domain)
    classes = _class_dirs(folder)
    if not classes:
        fail(f"domain folder '{folder}' has no class sub-folders")
    lists = [root / "image_list" / name.format(domain=domain_folder(spec, domain)) for name in spec.image_lists]
    present = [p for p in lists if p.is_file()]
    if present and len(present) < len(lists):  # half a domain would pass for all of it
        fail(f"image list '{next(p for p in lists if not p.is_file())}' does not exist (domain '{domain}' is "
             f"listed in {' and '.join(p.name for p in lists)}); place it, or remove the others to list the folders")
    if present and spec.class_from_path:
        return _label_by_class_folder(root, folder, lists)
    if present:
        return [item for p in lists for item in read_image_list(p, root)], classes
    items: list[Item] = []
    for label, cls in enumerate(classes):
        found = _images_in(folder / cls)
        if not found:
            warnings.warn(f"class folder '{folder / cls}' has no images: it stays a class (matched across domains "
                          f"by name) but this domain has no example of it")
        items += [(p.relative_to(root).as_posix(), label) for p in found]
    if not items:
        fail(f"domain folder '{folder}' has no images")
    return items, classes


def _label_by_class_folder(root: Path, folder: Path, lists: Sequence[Path]) -> tuple[list[Item], list[str]]:
    """Items of tllib's image lists labelled by their class folder (``<domain>/<class>/<file>``), labels in sorted
    class order. Each list number must name one class folder, so a list of another dataset is refused."""
    prefix = PurePosixPath(folder.relative_to(root).as_posix()).parts
    named: dict[int, str] = {}
    listed: list[tuple[str, str]] = []
    for path in lists:
        for rel, number in read_image_list(path, root):
            parts = PurePosixPath(rel).parts
            if parts[:len(prefix)] != prefix or len(parts) < len(prefix) + 2:
                fail(f"image list '{path}': '{rel}' is not in a class folder of '{folder}'")
            cls = parts[len(prefix)]
            if named.setdefault(number, cls) != cls:
                fail(f"image list '{path}': label {number} names two class folders, '{named[number]}' and '{cls}'")
            listed.append((rel, cls))
    classes = sorted(set(named.values()))
    if len(classes) < len(named):
        fail(f"image list '{lists[0]}': {len(named)} labels name only {len(classes)} class folders")
    index = {c: i for i, c in enumerate(classes)}
    return [(rel, index[cls]) for rel, cls in listed], classes


def check_same_classes(named: dict[str, list[str]]) -> list[str]:
    """Classes are matched across domains by folder name; a class missing anywhere is an error."""
    all_classes = sorted(set().union(*named.values()))
    for dom, classes in named.items():
        missing = sorted(set(all_classes) - set(classes))
        if missing:
            fail(f"class '{missing[0]}' is missing in domain '{dom}' ({len(missing)} classes missing in all)")
    return all_classes


# ----------------------------------------------------------------------------- image lists
def write_image_list(path: str | os.PathLike, items: Sequence[Item]) -> None:
    atomic_write_text(path, "".join(f"{p} {y}\n" for p, y in items))


def read_image_list(path: str | os.PathLike, root: str | os.PathLike) -> list[Item]:
    """Parse ``relative/path label`` lines; every path must stay inside ``root``."""
    path = Path(path)
    if not path.is_file():
        fail(f"image list '{path}' does not exist")
    items: list[Item] = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            fail(f"{path}:{n}: expected 'relative/path label', got '{line.strip()[:80]}'")
        rel, label = parts[0].strip(), int(parts[1])
        if label < 0:
            fail(f"{path}:{n}: negative label {label}")
        # lexical, not resolved: domain folders may be symlinks into shared storage, '..' may not escape
        pure = PurePosixPath(rel)
        if pure.is_absolute() or ".." in pure.parts:
            fail(f"{path}:{n}: '{rel}' points outside the dataset root '{root}'")
        items.append((rel, label))
    if not items:
        fail(f"image list '{path}' is empty")
    return items


# ----------------------------------------------------------------------------- splits
def stratified_split(items: Sequence[Item], test_ratio: float = 0.2, seed: int = 0) -> tuple[list[Item], list[Item]]:
    """PROTOCOL.md: one deterministic stratified train/test split per domain (sklearn, fixed seed)."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_ratio < 1.0:
        fail(f"--test-ratio must be in (0, 1), got {test_ratio}")
    labels = [y for _, y in items]
    try:
        train, test = train_test_split(list(items), test_size=test_ratio, random_state=seed, stratify=labels)
    except ValueError as e:
        fail(f"cannot split {len(items)} images stratified with test ratio {test_ratio}: {e}")
    return sorted(train), sorted(test)


def holdout_split(items: Sequence[Item], ratio: float, seed: int = 0) -> tuple[list[Item], list[Item]]:
    """A random share ``ratio`` of unlabeled items set aside, the rest kept: ``(kept, held_out)``. Unlabeled data
    cannot be stratified, so the draw is uniform (seeded); no label is read."""
    if not 0.0 < ratio < 1.0:
        fail(f"--select-holdout must be in (0, 1), got {ratio}")
    k = round(ratio * len(items))
    if not 0 < k < len(items):
        fail(f"--select-holdout {ratio} of {len(items)} unlabeled images leaves none to hold out or none to train on")
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()
    return [items[i] for i in sorted(order[k:])], [items[i] for i in sorted(order[:k])]


@dataclass
class DomainSplit:
    letter: str
    classes: list[str]
    train: list[Item]
    test: list[Item]

    @property
    def all(self) -> list[Item]:
        return sorted(self.train + self.test)


def prepare_domains(
    dataset: str, root: str | os.PathLike, domains: Sequence[str], split_dir: str | os.PathLike,
    test_ratio: float = 0.2, split_seed: int = 0,
) -> dict[str, DomainSplit]:
    """List, class-check and split every domain; the splits are written as image lists in ``split_dir``.

    Lists already in ``split_dir`` are reused, so every regime and method of a run tree sees the same images.
    """
    if dataset == "Digits":
        from .digits import ensure_digits

        ensure_digits(root)
    spec = dataset_spec(dataset, root)
    folders = [domain_folder(spec, d) for d in domains]  # an unknown domain is refused before any download
    from .download import DOWNLOADS, download_missing  # users with internet; offline: a one-line how-to

    if dataset in DOWNLOADS:
        download_missing(dataset, root, folders)
    listed = {d: list_domain(root, spec, d) for d in dict.fromkeys(domains)}
    classes = check_same_classes({d: c for d, (_, c) in listed.items()})
    out: dict[str, DomainSplit] = {}
    split_dir = Path(split_dir)
    for d, (items, dom_classes) in listed.items():
        bad = next((y for _, y in items if y >= len(dom_classes)), None)
        if bad is not None:
            fail(f"domain '{d}' of '{root}': label {bad} in its image list, but it has {len(dom_classes)} classes")
        # remap folder-order labels to the shared class order (identical when class sets match)
        remap = {i: classes.index(c) for i, c in enumerate(dom_classes)}
        items = [(p, remap.get(y, y)) for p, y in items]
        letter = domain_letter(spec, d)
        tr_path, te_path = split_dir / f"{letter}_train.txt", split_dir / f"{letter}_test.txt"
        manifest_path = split_dir / f"{letter}_manifest.json"
        manifest = split_manifest(root, classes, items, test_ratio, split_seed)
        if tr_path.is_file() and te_path.is_file():
            check_manifest(manifest_path, manifest, split_dir, d)
            train, test = read_image_list(tr_path, root), read_image_list(te_path, root)
        else:
            train, test = stratified_split(items, test_ratio, split_seed)
            write_image_list(tr_path, train)
            write_image_list(te_path, test)
            atomic_write_text(manifest_path, json.dumps(manifest, indent=1) + "\n")
        out[d] = DomainSplit(letter, classes, train, test)
    return out


def split_manifest(root: str | os.PathLike, classes: Sequence[str], items: Sequence[Item], test_ratio: float,
                   split_seed: int) -> dict:
    """What a domain's image lists were made from: reused lists must come from the same listing."""
    listing = hashlib.sha256("".join(f"{p} {y}\n" for p, y in sorted(items)).encode()).hexdigest()
    return {"root": str(Path(root).resolve()), "classes": list(classes), "images": len(items), "listing_sha256": listing,
            "test_ratio": test_ratio, "split_seed": split_seed}


def check_manifest(path: Path, now: dict, split_dir: Path, domain: str) -> None:
    """One-line error when existing lists were made from another dataset listing (a class added, files changed,
    another dataset of the same name): reusing them would train images under wrong labels."""
    if not path.is_file():  # lists a user placed by hand: theirs to vouch for, said once
        print(f"note: image lists in '{split_dir}' have no manifest (not written by LiteDA): used as they are",
              file=sys.stderr)
        return
    try:
        then = json.loads(path.read_text())
    except (OSError, ValueError):
        then = {}
    what = next((k for k in ("root", "classes", "listing_sha256", "test_ratio", "split_seed") if then.get(k) != now[k]),
                None)
    if what is not None:
        change = "unreadable manifest" if not then else {"root": f"root {then.get('root')} vs {now['root']}",
                                                  "classes": "the class folders changed",
                                                  "listing_sha256": "its image files changed"}.get(what, what + " changed")
        fail(f"image lists in '{split_dir}' were made from another listing of domain '{domain}' ({change}); delete "
             f"'{split_dir}' to split anew (finished runs keep their own copy) or use another --runs-root")


# ----------------------------------------------------------------------------- decoding + cache
def load_images(
    root: str | os.PathLike, items: Sequence[Item], size: int, cache_dir: str | os.PathLike | None = None,
    progress: bool = False, in_memory: Optional[bool] = None, workers: Optional[int] = None,
) -> tuple["torch.Tensor | MappedImages", torch.Tensor]:
    """Decode ``items`` once to uint8 images N x size x size x 3 (+ labels), cached on disk by content
    (``liteda.image_cache``): a tensor in RAM for a small list, :class:`MappedImages` (rows read from the
    memory-mapped cache file as they are asked for) for a larger one; both index to HWC uint8 tensors.

    Unreadable or truncated images are skipped with a warning and a count (a scraped dataset with one bad
    file should not stop a multi-hour run); if none can be read it is fatal.
    """
    root = Path(root)
    rels = [p for p, _ in items]
    if not rels:
        fail(f"no images to load under '{root}'")
    for rel in rels:
        if not (root / rel).is_file():
            fail(f"image '{root / rel}' does not exist")
    images, keep = load_decoded(root, rels, size, cache_dir, progress, in_memory, workers)
    if len(keep) < len(rels):
        warnings.warn(f"{len(rels) - len(keep)} of {len(rels)} images under '{root}' were unreadable and skipped")
    labels = torch.tensor([items[i][1] for i in keep], dtype=torch.long)
    return images, labels


# ----------------------------------------------------------------------------- transforms
def build_transform(train: bool, crop: int, mean: Optional[Sequence[float]] = None,
                    std: Optional[Sequence[float]] = None, scale: Sequence[float] = (0.08, 1.0),
                    hflip: bool = True, strong: bool = False):
    """tllib's office transforms on cached uint8 tensors (the cache already did ResizeImage(resize)).
    ``strong`` (training only): FixMatch's strong view on top, RandAugment (2 ops, magnitude 10) and a cutout."""
    from torchvision.transforms import v2 as T

    mean, std = mean or IMAGENET_MEAN, std or IMAGENET_STD
    ops = [T.RandomResizedCrop(crop, scale=tuple(scale), antialias=True)] + ([T.RandomHorizontalFlip()] if hflip else [])
    ops = ops + [T.RandAugment(num_ops=2, magnitude=10)] if strong else ops
    ops = ops if train else [T.CenterCrop(crop)]
    tail = [T.RandomErasing(p=1.0, scale=(0.02, 0.15), value=0)] if train and strong else []
    return T.Compose(ops + [T.ToDtype(torch.float32, scale=True), T.Normalize(list(mean), list(std))] + tail)


class TwoViews:
    """Two independent views of one image, ``(weak(x), strong(x))`` (FixMatch's pair; a batch collates to a list)."""

    def __init__(self, weak, strong):
        self.weak, self.strong = weak, strong

    def __call__(self, x):
        return self.weak(x), self.strong(x)


class TensorImageDataset(Dataset):
    """Decoded images (N x H x W x 3 uint8: a tensor in RAM, or :class:`MappedImages` read row by row from the
    cache file) with labels; transforms run on tensors."""

    def __init__(self, images: "torch.Tensor | MappedImages", labels: torch.Tensor, transform=None,
                 num_classes: int | None = None):
        self.images, self.labels, self.transform = images, labels, transform
        self.num_classes = num_classes or int(labels.max()) + 1

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = self.images[i].permute(2, 0, 1)
        return (self.transform(img) if self.transform else img), self.labels[i]


class UnlabeledImageDataset(TensorImageDataset):
    """Unlabeled images: ``labels`` are all -1 and an item is ``(image, index)``, so a method that labels the
    target itself (offline distillation's cached teacher outputs) can key on the image, never on its label."""

    def __init__(self, images: "torch.Tensor | MappedImages", transform=None, num_classes: int | None = None):
        super().__init__(images, torch.full((len(images),), -1, dtype=torch.long), transform, num_classes)

    def __getitem__(self, i: int):
        return super().__getitem__(i)[0], i


class ResumableSampler(Sampler[int]):
    """A (shuffled) pass over ``n`` items from its own generator, which can start a pass part-way: a run resumed
    from a checkpoint draws exactly the batches the uninterrupted run would have drawn next."""

    def __init__(self, n: int, shuffle: bool = True, seed: int = 0):
        self.n, self.shuffle = n, shuffle
        self.generator = torch.Generator().manual_seed(seed)
        self._perm: Optional[torch.Tensor] = None
        self._start = 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        if self._perm is None:
            self._perm = torch.randperm(self.n, generator=self.generator) if self.shuffle else torch.arange(self.n)
            self._start = 0
        perm, start = self._perm, self._start
        self._perm, self._start = None, 0
        yield from perm[start:].tolist()

    def begin_pass(self) -> dict:
        """Draws the next pass's order now and returns it (with the generator state after it) for a checkpoint."""
        self._perm = torch.randperm(self.n, generator=self.generator) if self.shuffle else torch.arange(self.n)
        self._start = 0
        return {"perm": self._perm.clone(), "generator": self.generator.get_state()}

    def resume_pass(self, state: dict, start: int) -> None:
        self.generator.set_state(state["generator"])
        self._perm, self._start = state["perm"].clone(), start


class ForeverDataIterator:
    """Endless iteration over a DataLoader (tllib's name), re-shuffling at each pass. With a
    :class:`ResumableSampler` its position is part of a checkpoint (``state_dict``/``load_state_dict``)."""

    def __init__(self, loader: DataLoader):
        self.loader = loader
        self.sampler = loader.sampler if isinstance(loader.sampler, ResumableSampler) else None
        self._pass: Optional[dict] = None
        self.consumed = 0  # batches drawn in the current pass
        self._it: Iterator = self._new_pass()

    def _new_pass(self) -> Iterator:
        if self.sampler is not None:
            self._pass = self.sampler.begin_pass()
        self.consumed = 0
        return iter(self.loader)

    def __next__(self):
        try:
            batch = next(self._it)
        except StopIteration:
            self._it = self._new_pass()
            batch = next(self._it)
        self.consumed += 1
        return batch

    def __len__(self) -> int:
        return len(self.loader)

    def state_dict(self) -> Optional[dict]:
        if self.sampler is None:
            return None
        return {**self._pass, "consumed": self.consumed}

    def load_state_dict(self, state: Optional[dict]) -> None:
        if self.sampler is None or state is None:
            return
        self.sampler.resume_pass(state, state["consumed"] * self.loader.batch_size)
        self._pass = {"perm": state["perm"], "generator": state["generator"]}
        self._it = iter(self.loader)
        self.consumed = state["consumed"]
