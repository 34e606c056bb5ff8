"""Dataset downloads for users with internet (tllib's archives): mirrors in order, integrity check, manual fallback
message."""
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

# OfficeHome, DomainNet and VisDA-2017: tllib's download lists (one mirror each; DomainNet's domains come from its
# authors' server, clipart and painting in their cleaned "groundtruth" version, as tllib has them)
OFFICEHOME_FILES = [
    ("image_list", "image_list.zip", ["https://cloud.tsinghua.edu.cn/f/ca3a3b6a8d554905b4cd/?dl=1"]),
    ("Art", "Art.tgz", ["https://cloud.tsinghua.edu.cn/f/4691878067d04755beab/?dl=1"]),
    ("Clipart", "Clipart.tgz", ["https://cloud.tsinghua.edu.cn/f/0d41e7da4558408ea5aa/?dl=1"]),
    ("Product", "Product.tgz", ["https://cloud.tsinghua.edu.cn/f/76186deacd7c4fa0a679/?dl=1"]),
    ("Real_World", "Real_World.tgz", ["https://cloud.tsinghua.edu.cn/f/dee961894cc64b1da1d7/?dl=1"]),
]
DOMAINNET_FILES = [
    ("image_list", "image_list.zip", ["https://cloud.tsinghua.edu.cn/f/90ecb35bbd374e5e8c41/?dl=1"]),
    ("clipart", "clipart.zip", ["http://csr.bu.edu/ftp/visda/2019/multi-source/groundtruth/clipart.zip"]),
    ("infograph", "infograph.zip", ["http://csr.bu.edu/ftp/visda/2019/multi-source/infograph.zip"]),
    ("painting", "painting.zip", ["http://csr.bu.edu/ftp/visda/2019/multi-source/groundtruth/painting.zip"]),
    ("quickdraw", "quickdraw.zip", ["http://csr.bu.edu/ftp/visda/2019/multi-source/quickdraw.zip"]),
    ("real", "real.zip", ["http://csr.bu.edu/ftp/visda/2019/multi-source/real.zip"]),
    ("sketch", "sketch.zip", ["http://csr.bu.edu/ftp/visda/2019/multi-source/sketch.zip"]),
]
VISDA2017_FILES = [
    ("image_list", "image_list.zip", ["https://cloud.tsinghua.edu.cn/f/c107de37b8094c5398dc/?dl=1"]),
    ("train", "train.tar", ["https://cloud.tsinghua.edu.cn/f/c5f3ce59139144ec8221/?dl=1"]),
    ("validation", "validation.tar", ["https://cloud.tsinghua.edu.cn/f/da70e4b1cf514ecea562/?dl=1"]),
]

MANUAL = ("place Office-31 by hand in tllib's layout: {root}/{{amazon,dslr,webcam}}/images/<class>/*.jpg "
          "and {root}/image_list/{{amazon,dslr,webcam}}.txt")

# dataset -> (its archives, how to place it by hand); a folder of the dataset that exists is never fetched
DOWNLOADS: dict[str, tuple[list, str]] = {
    "Office31": (OFFICE31_FILES, MANUAL),
    "OfficeHome": (OFFICEHOME_FILES, "place Office-Home by hand in tllib's layout: "
                   "{root}/{{Art,Clipart,Product,Real_World}}/<class>/*.jpg and "
                   "{root}/image_list/{{Art,Clipart,Product,Real_World}}.txt"),
    "DomainNet": (DOMAINNET_FILES, "place DomainNet by hand in tllib's layout: "
                  "{root}/{{clipart,infograph,painting,quickdraw,real,sketch}}/<class>/*.jpg and "
                  "{root}/image_list/<domain>_train.txt, <domain>_test.txt"),
    "VisDA2017": (VISDA2017_FILES, "place VisDA-2017 by hand in tllib's layout: "
                  "{root}/{{train,validation}}/<class>/* and {root}/image_list/{{train,validation}}.txt"),
}
MANUAL_LISTS = " (an empty {root}/image_list/ folder: the class folders define the images)"


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


def _copy_with_progress(response, f, name: str) -> None:
    from tqdm import tqdm

    length = getattr(response, "headers", {}).get("Content-Length")
    with tqdm(total=int(length) if length and length.isdigit() else None, unit="B", unit_scale=True,
              desc=f"download {name}", leave=False) as bar:
        for chunk in iter(lambda: response.read(1 << 20), b""):
            f.write(chunk)
            bar.update(len(chunk))


def fetch_and_extract(urls: list[str], name: str, work: Path, timeout: float = 30.0) -> tuple[str, Path]:
    """Each mirror in turn until one gives an archive that extracts whole; returns (url, extracted folder)."""
    errors = []
    for i, url in enumerate(urls):
        archive, out = work / f"{i}_{name}", work / f"{i}_x"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, open(archive, "wb") as f:
                _copy_with_progress(r, f, name)
            _extract(archive, out)
            print(f"downloaded {name} from {url} sha256={sha256_of(archive)}")
            return url, out
        except ARCHIVE_ERRORS as e:  # a dead mirror, or one that answered with a truncated / wrong body
            errors.append(f"{url}: {str(e)[:120]}")
            shutil.rmtree(out, ignore_errors=True)
        finally:
            archive.unlink(missing_ok=True)  # extracted or useless: archives of DomainNet are gigabytes
    raise OSError("; ".join(errors))


def download_archives(root: str | os.PathLike, files: list, manual: str) -> None:
    """Downloads the listed archives whose folder ``root`` lacks into a temporary folder and moves them into
    ``root`` only when every one has arrived and extracted: a failed download creates nothing (not even
    ``root``)."""
    root = Path(root)
    missing = [(folder, name, urls) for folder, name, urls in files if not (root / folder).exists()]
    if not missing:
        return
    # beside the root when it can be (same file system: the move is a rename), else the system's temporary folder
    work_in = root.parent if root.parent.is_dir() else None
    with tempfile.TemporaryDirectory(prefix=".liteda-download-", dir=work_in) as tmp:
        extracted = []
        for folder, name, urls in missing:
            try:
                extracted.append(fetch_and_extract(urls, name, Path(tmp))[1])
            except OSError as e:
                fail(f"'{root / folder}' is missing and {name} could not be downloaded from any mirror "
                     f"({str(e)[:200]}); " + (manual + MANUAL_LISTS).format(root=root))
        root.mkdir(parents=True, exist_ok=True)
        for out in extracted:
            for p in out.iterdir():
                if not (root / p.name).exists():  # placed meanwhile (another run downloading alongside): kept
                    shutil.move(str(p), root / p.name)


def download_missing(dataset: str, root: str | os.PathLike, domain_folders: list[str]) -> None:
    """The image lists and the asked-for domains of ``dataset`` that ``root`` lacks, downloaded."""
    files, manual = DOWNLOADS[dataset]
    download_archives(root, [f for f in files if f[0] == "image_list" or f[0] in domain_folders], manual)


def download_office31(root: str | os.PathLike) -> None:
    """Every Office-31 archive whose folder ``root`` lacks."""
    download_archives(root, OFFICE31_FILES, MANUAL)
