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
            z.testzip()
            z.extractall(dest)
    else:
        with tarfile.open(archive) as t:
            t.getmembers()  # reads the whole index: a truncated archive fails here
            t.extractall(dest, filter="data")


def fetch(urls: list[str], dest: Path, timeout: float = 30.0) -> str:
    """Try each mirror; return the URL that worked."""
    errors = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, open(dest, "wb") as f:
                shutil.copyfileobj(r, f)
            return url
        except OSError as e:
            errors.append(f"{url}: {e}")
    raise OSError("; ".join(errors))


def download_office31(root: str | os.PathLike) -> None:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for folder, name, urls in OFFICE31_FILES:
        if (root / folder).exists():
            continue
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            archive = Path(tmp) / name
            try:
                url = fetch(urls, archive)
                _extract(archive, Path(tmp) / "x")
            except (OSError, tarfile.TarError, zipfile.BadZipFile) as e:
                fail(f"could not download {name} from any mirror ({str(e)[:200]}); " + MANUAL.format(root=root))
            print(f"downloaded {name} from {url} sha256={sha256_of(archive)}")
            for p in (Path(tmp) / "x").iterdir():
                os.replace(p, root / p.name)
