"""Office-31 download for users with internet: mirrors in order, integrity check, manual fallback message."""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from .utils import fail

# (folder it creates, archive name, mirrors). The Tsinghua links are tllib's; Google Drive is tllib's
# alternative. No checksums are published for these archives, so integrity is checked by listing the archive
# (a truncated download fails there) and the sha256 of what was fetched is printed for the user's records.
OFFICE31_FILES = [
    ("image_list", "image_list.zip", [
        "https://cloud.tsinghua.edu.cn/f/d9bca681c71249f19da2/?dl=1",
        "https://drive.google.com/uc?export=download&id=1JGjr1bYe0oYkso6prudvKYoFi0FOJcrE",
    ]),
    ("amazon", "amazon.tgz", [
        "https://cloud.tsinghua.edu.cn/f/edc8d1bba1c740dc821c/?dl=1",
        "https://drive.google.com/uc?export=download&id=1xq7gPW14FSLlrerR9nDCryKeSBHNNeFp",
    ]),
    ("dslr", "dslr.tgz", [
        "https://cloud.tsinghua.edu.cn/f/ca6df562b7e64850ad7f/?dl=1",
        "https://drive.google.com/uc?export=download&id=14F7HWvclPehy38aVMNNap1oFLVitUAgA",
    ]),
    ("webcam", "webcam.tgz", [
        "https://cloud.tsinghua.edu.cn/f/82b24ed2e08f4a3c8888/?dl=1",
        "https://drive.google.com/uc?export=download&id=11OW_6J7kss6nlgKmbX6jWWQbO3yTmHNV",
    ]),
]

MANUAL = ("place Office-31 by hand in tllib's layout: {root}/{{amazon,dslr,webcam}}/images/<class>/*.jpg "
          "and {root}/image_list/{{amazon,dslr,webcam}}.txt")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _extract(archive: Path, dest: Path) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            bad = z.testzip()
            if bad is not None:
                raise zipfile.BadZipFile(f"damaged member {bad}")
            z.extractall(dest)
    else:
        with tarfile.open(archive) as t:
            t.getmembers()  # reads the whole index: a truncated archive fails here
            t.extractall(dest, filter="data")


ARCHIVE_ERRORS = (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile)


def fetch_and_extract(urls: list[str], name: str, work: Path, timeout: float = 30.0) -> tuple[str, Path]:
    """Each mirror in turn until one gives an archive that extracts whole; returns (url, extracted folder)."""
    errors = []
    for i, url in enumerate(urls):
        archive, out = work / f"{i}_{name}", work / f"{i}_x"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, open(archive, "wb") as f:
                shutil.copyfileobj(r, f)
            _extract(archive, out)
            print(f"downloaded {name} from {url} sha256={sha256_of(archive)}")
            return url, out
        except ARCHIVE_ERRORS as e:  # a dead mirror, or one that answered with a truncated / wrong body
            errors.append(f"{url}: {str(e)[:120]}")
            shutil.rmtree(out, ignore_errors=True)
    raise OSError("; ".join(errors))


def download_office31(root: str | os.PathLike) -> None:
    """Downloads what is missing into a temporary folder and moves it into ``root`` only when every archive
    has arrived and extracted: a failed download creates nothing (not even ``root``)."""
    root = Path(root)
    missing = [(folder, name, urls) for folder, name, urls in OFFICE31_FILES if not (root / folder).exists()]
    if not missing:
        return
    with tempfile.TemporaryDirectory(prefix="liteda-office31-") as tmp:
        extracted = []
        for folder, name, urls in missing:
            try:
                extracted.append(fetch_and_extract(urls, name, Path(tmp))[1])
            except OSError as e:
                fail(f"could not download {name} from any mirror ({str(e)[:200]}); " + MANUAL.format(root=root))
        root.mkdir(parents=True, exist_ok=True)
        for out in extracted:
            for p in out.iterdir():
                shutil.move(str(p), root / p.name)
