"""The decoded-image cache: an image list decoded once, at one square size, into a file that is memory-mapped.

    <cache>/<key>.npy    N x size x size x 3 uint8 in numpy's .npy format (np.load(path, mmap_mode="r") reads it)
    <cache>/<key>.json   {"keep": the list positions of those N images, "skipped": how many were unreadable}

The key hashes the dataset root, each listed file's path, size and mtime, and the size, so a changed list, file
or size is a new entry. An entry is built once: decoded by worker processes (a progress bar with an ETA) into a
temporary file beside it, which is renamed into place only when whole. Builders of one cache folder take turns
under ``.build.lock``, and one that finds the entry finished while it waited uses it. A damaged or mismatched
entry is detected when it is opened and built again.

Small lists are read into RAM whole; larger ones stay on disk as :class:`MappedImages`, which reads the rows a
batch asks for, so a process's memory depends on the batch size and the number of loader workers, not on the
dataset (benchmarks/results/image_cache.md).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .utils import atomic_write_text, fail

# a decoded list up to this size is read into RAM whole; a larger one is read row by row from the mapped file,
# which costs a little more a row than RAM and nothing a training step notices (benchmarks/results/image_cache.md)
IN_MEMORY_MAX_BYTES = 64 << 20
# a mapped reader drops its mapping after reading this much: rows read stay in the OS page cache (shared by
# every process), not in this process's resident memory
MAP_WINDOW_BYTES = 64 << 20
PARALLEL_MIN_IMAGES = 512  # by default, below this starting worker processes costs more than it saves
CHUNK_IMAGES = 32  # images a worker decodes per task: the progress bar's step
DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError)


def decode_image(path: Path, size: int) -> np.ndarray:
    """Decode any PIL-readable image to RGB uint8 ``size x size``: EXIF orientation applied, grayscale/CMYK/RGBA
    converted, 16-bit and 32-bit integer images scaled to 8 bits (a plain convert would clip them to white)."""
    with Image.open(path) as img:
        img.draft("RGB", (size, size))  # JPEG: decode at reduced scale when much larger (fast DSLR)
        img = ImageOps.exif_transpose(img)
        if img.mode.startswith("I"):  # I, I;16, I;16B ...: integers beyond 8 bits
            a = np.asarray(img, dtype=np.float64)
            top = 65535.0 if a.max() <= 65535 else float(a.max())
            img = Image.fromarray(np.clip(a / top * 255.0, 0, 255).astype(np.uint8), "L")
        img = img.convert("RGB").resize((size, size), Image.BILINEAR)
        return np.asarray(img, dtype=np.uint8)


def cache_key(root: Path, rels: Sequence[str], size: int) -> str:
    h = hashlib.sha1(f"v1|{size}|{root.resolve()}".encode())
    for rel in rels:
        st = (root / rel).stat()
        h.update(f"|{rel}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


# ----------------------------------------------------------------------------- reading
class MappedImages:
    """The images of a cache file, N x H x W x 3 uint8, read lazily: ``images[i]`` is a row copied out of the
    memory-mapped file as a torch uint8 tensor (as a row of the in-memory tensor is), ``images[a:b]`` and
    ``images[[i, j, ...]]`` a tensor of rows. Pickled by path, so a DataLoader worker started by spawn or forkserver maps the file itself."""

    def __init__(self, path: str | os.PathLike, shape: Sequence[int], offset: int):
        self.path, self.shape, self.offset = str(path), tuple(int(s) for s in shape), int(offset)
        self.row_bytes = int(np.prod(self.shape[1:]))
        self._file = None  # kept open: the mapping survives the cache folder being deleted under a run
        self._map: Optional[np.memmap] = None
        self._rows: Optional[np.ndarray] = None  # the same mapping as a plain ndarray: no memmap bookkeeping a row
        self._read = 0

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def array(self) -> np.memmap:
        """The whole file as a read-only np.memmap (nothing is read until it is indexed)."""
        if self._file is None:
            self._file = open(self.path, "rb")
        if self._map is None:
            self._map = np.memmap(self._file, np.uint8, "r", self.offset, self.shape)
        return self._map

    def row(self, i: int) -> np.ndarray:
        if self._read >= MAP_WINDOW_BYTES:  # unmapping releases the pages read so far from this process
            self._map = self._rows = None
            self._read = 0
        if self._rows is None:
            self._rows = self.array.view(np.ndarray)
        self._read += self.row_bytes
        return self._rows[i].copy()

    def __getitem__(self, i):
        import torch

        if isinstance(i, slice) or np.ndim(i) == 1:  # a slice or a list of indices: a tensor of rows, as a tensor
            positions = range(len(self))[i] if isinstance(i, slice) else [self._position(int(k)) for k in i]
            rows = [self.row(k) for k in positions]
            return torch.from_numpy(np.stack(rows)) if rows else torch.empty((0, *self.shape[1:]), dtype=torch.uint8)
        return torch.from_numpy(self.row(self._position(int(i))))

    def _position(self, i: int) -> int:
        if not -len(self) <= i < len(self):
            raise IndexError(f"image {i} of {len(self)}")
        return i % len(self)

    def __iter__(self) -> Iterator:
        return (self[i] for i in range(len(self)))

    def __getstate__(self) -> dict:
        return {"path": self.path, "shape": self.shape, "offset": self.offset}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["shape"], state["offset"])

    def __repr__(self) -> str:
        return f"MappedImages('{self.path}', shape={self.shape})"


def read_entry(npy: Path, meta: Path, n: int, size: int, quiet: bool = False) -> Optional[tuple[np.memmap, list[int]]]:
    """A cache entry mapped (nothing read yet) with its kept list positions, or None when it is missing or damaged
    (then it is decoded and written again)."""
    if not (npy.is_file() and meta.is_file()):
        return None
    try:
        keep = json.loads(meta.read_text())["keep"]
        arr = np.load(npy, mmap_mode="r")  # checks the header and that the file holds every row
    except (OSError, ValueError, KeyError, TypeError, EOFError) as e:
        if not quiet:
            warnings.warn(f"decoded-image cache '{npy}' is damaged ({str(e)[:80]}): decoding again")
        return None
    if arr.dtype != np.uint8 or arr.shape[1:] != (size, size, 3) or len(arr) != len(keep) or \
            (keep and max(keep) >= n):
        if not quiet:
            warnings.warn(f"decoded-image cache '{npy}' does not match its listing: decoding again")
        return None
    return arr, keep


# ----------------------------------------------------------------------------- building
def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _decode_chunk(job: tuple) -> tuple[int, dict[int, str]]:
    """Decode ``rels`` into rows ``start..`` of the .npy file being built (runs in a worker process)."""
    path, offset, shape, root, size, start, rels = job
    out = np.memmap(path, np.uint8, "r+", offset + start * int(np.prod(shape[1:])), (len(rels), *shape[1:]))
    failed: dict[int, str] = {}
    for k, rel in enumerate(rels):
        try:
            out[k] = decode_image(Path(root) / rel, size)
        except DECODE_ERRORS as e:
            failed[start + k] = f"{Path(root) / rel}: {str(e)[:160]}"
    out.flush()
    del out
    return len(rels), failed


def decode_into(path: Path, offset: int, root: Path, rels: Sequence[str], size: int, progress: bool,
                workers: Optional[int]) -> dict[int, str]:
    """Decode every listed image into the rows of ``path`` (an .npy of N x size x size x 3 uint8 at ``offset``);
    returns the rows that could not be read, with why. ``workers`` processes (default: every available CPU, for
    lists of PARALLEL_MIN_IMAGES or more)."""
    from tqdm import tqdm

    n = len(rels)
    shape = (n, size, size, 3)
    jobs = [(str(path), offset, shape, str(root), size, a, list(rels[a:a + CHUNK_IMAGES]))
            for a in range(0, n, CHUNK_IMAGES)]
    parallel = min(workers or available_cpus(), len(jobs))
    if workers is None and n < PARALLEL_MIN_IMAGES:
        parallel = 1
    failed: dict[int, str] = {}
    with tqdm(total=n, desc=f"decode {n} images", unit="img", leave=False, disable=not progress) as bar, \
            contextlib.ExitStack() as stack:
        if parallel <= 1:
            results: Iterator = map(_decode_chunk, jobs)  # in this process (also sees its PIL settings)
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            # spawn: the workers start clean, never inheriting a forked copy of a threaded torch process
            pool = ProcessPoolExecutor(parallel, mp_context=mp.get_context("spawn"))
            stack.callback(pool.shutdown, wait=True, cancel_futures=True)  # Ctrl-C: no waiting for the rest
            results = (f.result() for f in as_completed([pool.submit(_decode_chunk, job) for job in jobs]))
        try:
            for done, bad in results:
                failed.update(bad)
                bar.update(done)
        except BrokenProcessPool as e:  # a worker killed (out of memory, a signal): the pool cannot go on
            fail(f"a process decoding images into '{path.parent}' died ({e}); run again to rebuild the cache")
    return failed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _new_npy(folder: Path, name: str, n: int, size: int) -> tuple[Path, int]:
    """An empty N x size x size x 3 .npy temporary in ``folder`` (its rows unwritten) and its data offset."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    os.close(fd)
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    offset = out.offset
    del out
    return Path(tmp), offset


def build_entry(root: Path, rels: Sequence[str], size: int, npy: Path, meta: Path, progress: bool,
                workers: Optional[int]) -> None:
    """Decode the list into ``npy`` + ``meta`` (called under the build lock). The rows of unreadable images are
    dropped, so row k is the k-th kept image, as ``meta``'s ``keep`` lists."""
    n = len(rels)
    need, free = n * size * size * 3, shutil.disk_usage(npy.parent).free
    if need > free:  # checked first: writing a mapped file on a full disk kills the writer (SIGBUS)
        fail(f"decoding {n} images at {size} px needs {need / 2**30:.1f} GB in the cache folder '{npy.parent}', "
             f"which has {free / 2**30:.1f} GB free; free space there or set LITEDA_CACHE / --cache-dir")
    tmp, offset = _new_npy(npy.parent, npy.name, n, size)
    try:
        failed = decode_into(tmp, offset, root, rels, size, progress, workers)
        for k, why in enumerate(sorted(failed.items())):
            if k < 5:
                warnings.warn(f"skipping unreadable image {why[1]}")
        if len(failed) == n:
            fail(f"none of the {n} images under '{root}' could be read")
        keep = [i for i in range(n) if i not in failed]
        if failed:  # rare (broken files): copy the readable rows into a file without gaps
            tmp = _compact(tmp, offset, n, size, keep, npy)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, npy)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    atomic_write_text(meta, json.dumps({"keep": keep, "skipped": n - len(keep)}))


def _compact(tmp: Path, offset: int, n: int, size: int, keep: list[int], npy: Path) -> Path:
    src = np.memmap(tmp, np.uint8, "r", offset, (n, size, size, 3))
    out_path, out_offset = _new_npy(npy.parent, npy.name, len(keep), size)
    try:
        out = np.memmap(out_path, np.uint8, "r+", out_offset, (len(keep), size, size, 3))
        for a in range(0, len(keep), 256):
            out[a:a + 256] = src[keep[a:a + 256]]
        out.flush()
        del out, src
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise
    tmp.unlink()
    return out_path


@contextlib.contextmanager
def build_lock(cache_dir: Path, progress: bool):
    """One builder at a time per cache folder (each decodes with every CPU). Temporaries left by a killed build
    are removed by the next lock holder, the only writer then."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # no advisory locks: builders race, each renames a whole file of the same content
        yield
        return
    fd = os.open(cache_dir / ".build.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress:
                print(f"waiting for another process decoding images into '{cache_dir}'", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        for stale in cache_dir.glob(".*.npy.*.tmp"):
            stale.unlink(missing_ok=True)
        yield
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- entry point
def load_decoded(root: Path, rels: Sequence[str], size: int, cache_dir: Optional[str | os.PathLike],
                 progress: bool = False, in_memory: Optional[bool] = None, workers: Optional[int] = None):
    """The decoded images of ``rels`` and the list positions they came from (unreadable images skipped).

    Images: a uint8 torch tensor N x size x size x 3 in RAM when ``in_memory`` (default: when it is at most
    IN_MEMORY_MAX_BYTES, or when there is no cache folder), else :class:`MappedImages` over the cache file."""
    if cache_dir is None:  # decoded through a throw-away cache folder, then held in memory
        with tempfile.TemporaryDirectory(prefix="liteda-decode-") as tmp:
            return load_decoded(root, rels, size, tmp, progress, True, workers)
    cache_dir = Path(cache_dir)
    key = cache_key(root, rels, size)
    npy, meta = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    entry = read_entry(npy, meta, len(rels), size)
    if entry is None:
        with build_lock(cache_dir, progress):
            entry = read_entry(npy, meta, len(rels), size, quiet=True)  # finished by another process meanwhile
            if entry is None:
                build_entry(root, rels, size, npy, meta, progress, workers)
                entry = read_entry(npy, meta, len(rels), size)
                if entry is None:
                    fail(f"decoded-image cache '{npy}' could not be read back after writing it")
    arr, keep = entry
    if in_memory is None:
        in_memory = arr.nbytes <= IN_MEMORY_MAX_BYTES
    if in_memory:
        import torch

        del arr
        return torch.from_numpy(np.load(npy)), keep
    return MappedImages(npy, arr.shape, arr.offset), keep
