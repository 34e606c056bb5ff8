"""The decoded-image cache held in RAM against read from its memory-mapped file, on synthetic folder datasets.

    python benchmarks/image_cache.py --sizes 2000 10000 30000 --out benchmarks/results/image_cache

For each size N, in a temporary folder (deleted afterwards): N random 256 px JPEGs in 10 class folders, the cache
built once with every CPU (and with one worker for sizes up to --serial-max, to show what the worker processes
buy), then one fresh process per mode runs a training-style pass over it: ``load_images`` (``in_memory`` True or
False), a DataLoader with the training transform (RandomResizedCrop 224 + flip + normalise), batch 32, shuffled.
Each process reports the time to open the cache, the pass's images per second, and its memory: peak resident
set (the kernel's high-water mark), and resident anonymous memory (what the OS cannot drop and read back from
the file) sampled after every batch, both summed over loader workers. The cache file has just been written, so
it is in the OS page cache: reads from a cold disk are not measured.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLASSES = 10


# ----------------------------------------------------------------------------- data
def _make_images(job: tuple) -> None:
    root, start, stop, size = job
    from PIL import Image

    rng = np.random.default_rng(start)
    for k in range(start, stop):
        # smooth random content (a coarse random grid upsampled, plus grain): JPEGs of photo-like size
        coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
        img = np.asarray(coarse, dtype=np.int16) + rng.integers(-12, 13, (size, size, 3), dtype=np.int16)
        path = Path(root) / image_path(k)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path.with_suffix(".part"), "JPEG", quality=90)
        os.replace(path.with_suffix(".part"), path)  # a file that exists is whole


def image_path(k: int) -> str:
    return f"c{k % CLASSES}/{k:07d}.jpg"


def make_dataset(root: Path, n: int, size: int, workers: int) -> list[tuple[str, int]]:
    """N images in ``root``; blocks of them that a kept folder already holds (--data) are not made again."""
    import multiprocessing as mp

    for c in range(CLASSES):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
    step = 500
    jobs = [(str(root), a, min(a + step, n), size) for a in range(0, n, step)
            if not (root / image_path(min(a + step, n) - 1)).is_file()]  # each block is written in order
    if jobs:
        with mp.get_context("spawn").Pool(workers) as pool:
            pool.map(_make_images, jobs)
    return [(image_path(k), k % CLASSES) for k in range(n)]


# ----------------------------------------------------------------------------- memory
def memory_now() -> tuple[float, float | None]:
    """(resident MB, resident anonymous MB) of this process and its children (loader workers)."""
    try:
        import psutil
    except ImportError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, None
    procs = [psutil.Process()]
    procs += procs[0].children(recursive=True)
    rss = anon = 0.0
    for p in procs:
        try:
            m = p.memory_info()
        except psutil.NoSuchProcess:
            continue
        rss += m.rss
        anon += m.rss - getattr(m, "shared", 0)  # Linux: shared = file-backed and shared-memory pages
    return rss / 2**20, anon / 2**20


def peak_rss_mb() -> float:
    """The kernel's high-water mark of this process and of its finished children (loader workers)."""
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale
    return (own + kids) / 2**20


# ----------------------------------------------------------------------------- one pass (in its own process)
def training_pass(a) -> dict:
    import torch
    from torch.utils.data import DataLoader

    from liteda.datasets import TensorImageDataset, build_transform, load_images

    torch.set_num_threads(a.threads)
    items = json.loads(Path(a.items).read_text())
    rss0, anon0 = memory_now()
    t0 = time.perf_counter()
    images, labels = load_images(a.root, items, a.size, a.cache, in_memory=a.mode == "memory")
    open_s = time.perf_counter() - t0
    ds = TensorImageDataset(images, labels, build_transform(True, a.crop))
    loader = DataLoader(ds, batch_size=32, shuffle=True, num_workers=a.workers,
                        generator=torch.Generator().manual_seed(0))
    peak_anon = anon_after_open = memory_now()[1]
    n, t0 = 0, time.perf_counter()
    for x, _ in loader:
        n += len(x)
        anon = memory_now()[1]
        peak_anon = max(peak_anon, anon) if anon is not None else None
    pass_s = time.perf_counter() - t0
    out = {"mode": a.mode, "images": n, "workers": a.workers, "open_s": open_s, "pass_s": pass_s,
           "images_per_s": n / pass_s, "rss_before_mb": rss0, "anon_before_mb": anon0,
           "anon_after_open_mb": anon_after_open, "peak_anon_mb": peak_anon, "peak_rss_mb": peak_rss_mb(),
           "kind": type(images).__name__}
    if a.mode == "memory":  # memory measured: now the mapped file beside the tensor, image by image
        mapped, _ = load_images(a.root, items, a.size, a.cache, in_memory=False)
        out["interleaved"] = interleaved(images, mapped, build_transform(True, a.crop), a.read_images)
    return out


def interleaved(in_ram, mapped, transform, count: int) -> dict:
    """Median µs to take one image at a random position out of each cache, alternating image by image (so load
    from other jobs falls on both alike): the read alone, and the read with the training transform."""
    order = np.random.default_rng(1).permutation(len(in_ram))[:count]
    steps = {"read_us": lambda ims, i: ims[i].permute(2, 0, 1).contiguous(),  # what the transform is handed
             "read_transform_us": lambda ims, i: transform(ims[i].permute(2, 0, 1))}
    out = {}
    for name, step in steps.items():
        times: dict[str, list[float]] = {"memory": [], "disk": []}
        for i in order.tolist():
            for mode, ims in (("memory", in_ram), ("disk", mapped)):
                t0 = time.perf_counter()
                step(ims, i)
                times[mode].append(time.perf_counter() - t0)
        out[name] = {mode: float(np.median(v)) * 1e6 for mode, v in times.items()}
    return out


def run_child(root: Path, items_file: Path, cache: Path, mode: str, a) -> dict:
    cmd = [sys.executable, __file__, "--child", "--root", str(root), "--items", str(items_file), "--cache",
           str(cache), "--mode", mode, "--size", str(a.size), "--crop", str(a.crop), "--workers", str(a.workers),
           "--threads", str(a.threads), "--read-images", str(a.read_images)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the study
def build_time(root: Path, items, size: int, cache: Path, workers: int | None) -> float:
    from liteda.image_cache import load_decoded

    t0 = time.perf_counter()
    load_decoded(root, [p for p, _ in items], size, cache, progress=False, in_memory=False, workers=workers)
    return time.perf_counter() - t0


def measure(a) -> dict:
    from liteda.image_cache import IN_MEMORY_MAX_BYTES, PARALLEL_MIN_IMAGES, available_cpus

    cpus = available_cpus()
    rows = []
    with tempfile.TemporaryDirectory(prefix="liteda-image-cache-bench-", dir=a.tmp) as tmp:
        tmp = Path(tmp)
        data = Path(a.data) if a.data else tmp / "data"
        t0 = time.perf_counter()
        all_items = make_dataset(data, max(a.sizes), a.image_size, cpus)
        print(f"{len(all_items)} JPEGs ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        for n in sorted(a.sizes):
            items = all_items[:n]
            items_file = tmp / f"items_{n}.json"
            items_file.write_text(json.dumps(items))
            cache = tmp / f"cache_{n}"
            row = {"n": n, "cache_mb": n * a.size * a.size * 3 / 2**20}
            if n <= a.serial_max:
                row["build_s_1_worker"] = build_time(data, items, a.size, tmp / f"serial_{n}", 1)
            row["build_s"] = build_time(data, items, a.size, cache, None)  # LiteDA's default
            row["build_workers"] = cpus if n >= PARALLEL_MIN_IMAGES else 1
            runs: dict[str, list[dict]] = {"memory": [], "disk": []}
            for r in range(a.rounds):  # alternating order: background load drifts over both modes alike
                for mode in ("memory", "disk") if r % 2 == 0 else ("disk", "memory"):
                    runs[mode].append(run_child(data, items_file, cache, mode, a))
                    print(f"N={n} {mode}: {runs[mode][-1]['images_per_s']:.0f} img/s, peak RSS "
                          f"{runs[mode][-1]['peak_rss_mb']:.0f} MB", file=sys.stderr)
            for mode, done in runs.items():  # the fastest pass (least disturbed), the most memory of any
                row[mode] = {**max(done, key=lambda x: x["images_per_s"]), "rounds": done,
                             "peak_rss_mb": max(x["peak_rss_mb"] for x in done),
                             "peak_anon_mb": max(x["peak_anon_mb"] or 0 for x in done) or None}
            rows.append(row)
    return {"rows": rows, "in_memory_max_mb": IN_MEMORY_MAX_BYTES / 2**20}


def machine(cpus: int) -> dict:
    from liteda.utils import cpu_name, machine_info

    info = machine_info()
    info["machine"] = f"{cpus}-core {cpu_name()} CPU"
    try:
        info["ram_gb"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        pass
    return info


def to_md(doc: dict, command: str) -> str:
    from liteda.tables import to_markdown

    m, rows = doc["machine"], doc["rows"]
    head = ["images", "cache MB", "build s (workers)", "build s, 1 worker", "mode", "open s", "read µs/image",
            "read + transform µs/image", "pass images/s", "peak RSS MB", "anonymous MB: before → peak"]
    body = []
    for r in rows:
        for mode in ("memory", "disk"):
            x, il = r[mode], r["memory"]["interleaved"]
            body.append([f"{r['n']:,}", f"{r['cache_mb']:,.0f}", f"{r['build_s']:.1f} ({r['build_workers']})",
                         f"{r['build_s_1_worker']:.1f}" if "build_s_1_worker" in r else "–",
                         {"memory": "in RAM (tensor)", "disk": "memory-mapped file"}[mode], f"{x['open_s']:.2f}",
                         f"{il['read_us'][mode]:.0f}", f"{il['read_transform_us'][mode]:.0f}",
                         f"{x['images_per_s']:.0f}", f"{x['peak_rss_mb']:,.0f}",
                         f"{x['anon_before_mb']:,.0f} → {x['peak_anon_mb']:,.0f}" if x["peak_anon_mb"] else "–"])
    def per_n(f) -> str:
        return ", ".join(f"{f(r)} at {r['n']:,}" for r in rows)

    item = per_n(lambda r: "{disk:.0f} vs {memory:.0f} µs".format(**r["memory"]["interleaved"]["read_transform_us"]))
    speed = per_n(lambda r: f"{r['disk']['images_per_s'] / r['memory']['images_per_s']:.2f}×")
    grown = {mode: per_n(lambda r: f"{r[mode]['peak_anon_mb'] - r[mode]['anon_before_mb']:,.0f} MB")
             for mode in ("memory", "disk")}
    return (f"# Decoded-image cache: in RAM vs memory-mapped file\n\n"
            f"Machine: {m['machine']}, {m.get('ram_gb', 0):.0f} GB RAM, torch {m['torch']}, {doc['threads']} torch "
            f"thread(s), {doc['workers']} DataLoader workers; 1-min load average {doc['load'][0]:.1f} → "
            f"{doc['load'][1]:.1f} (other jobs share the cores: absolute rates are low, the modes were measured "
            f"alike).\n"
            f"Synthetic folder datasets: random {doc['image_size']} px JPEGs in 10 class folders, cached at "
            f"{doc['size']} px; a training-style pass: `load_images` + DataLoader with the training transform "
            f"(RandomResizedCrop {doc['crop']} + flip + normalise), batch 32, shuffled, one pass, each mode in a "
            f"fresh process, {doc['rounds']} rounds in alternating order (images/s: the fastest round; memory: the "
            f"most of any round). The cache file was just written, so it is read from the OS page cache, not a "
            f"cold disk.\nRegenerate: `{command}`\n\n"
            + to_markdown(head, body)
            + f"\nOne image read and transformed, memory-mapped vs in RAM: {item}; the loader pass, memory-mapped "
            f"relative to in RAM: {speed}. Anonymous memory the pass added above the process's own: in RAM "
            f"{grown['memory']}; memory-mapped {grown['disk']}.\n\n"
            "- *build*: decoding every JPEG into the cache file, the first use of a list (worker processes, one "
            "per CPU, from 512 images); *open*: a later use, the whole file read into RAM, or only mapped; *read*, "
            "*read + transform*: the median time to take one image out of the cache at a random position (without, "
            f"and with, the training transform), the two modes alternating image by image in one process "
            f"({doc['read_images']} images): the robust comparison on a shared machine; *pass*: the whole loader, "
            "batches collated.\n"
            "- *peak RSS*: the kernel's high-water mark of the process (and its loader workers): torch's own "
            "libraries are most of it; pages of the mapped file count while they are mapped. *anonymous*: resident "
            "memory that is not file-backed (what the OS cannot drop and read back), after the imports and before "
            "`load_images`, and at its highest after any batch of the pass.\n"
            f"- LiteDA keeps a list in RAM up to {doc['in_memory_max_mb']:.0f} MB (`IN_MEMORY_MAX_BYTES` in "
            "`plugins/image_cache.py`) and reads larger ones from the mapped file.\n")


def shown_flags(argv: list[str]) -> str:
    """The flags that shape the result (where the temporary files went does not)."""
    out, skip = [], False
    for arg in argv:
        if skip or arg in ("--data", "--tmp"):
            skip = not skip
            continue
        out.append(arg)
    return " ".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000, 30000], help="dataset sizes (images)")
    p.add_argument("--image-size", type=int, default=256, help="side of the synthetic JPEGs")
    p.add_argument("--size", type=int, default=256, help="cache size (LiteDA's --resize-size)")
    p.add_argument("--crop", type=int, default=224, help="training crop")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers of the pass (LiteDA's -j default: 0)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the pass")
    p.add_argument("--read-images", type=int, default=2000, help="images read one by one in each cache, alternating")
    p.add_argument("--rounds", type=int, default=2, help="passes per mode, in alternating order")
    p.add_argument("--serial-max", type=int, default=2000, help="also time a one-worker build up to this size")
    p.add_argument("--tmp", default=None, help="where the temporary dataset and caches go (system default)")
    p.add_argument("--data", default=None, help="make the synthetic dataset here and keep it (a rerun reuses it); "
                   "default: in the temporary folder")
    p.add_argument("--out", default="benchmarks/results/image_cache", help="writes OUT.json and OUT.md")
    # one pass in a fresh process (internal)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    p.add_argument("--items", help=argparse.SUPPRESS)
    p.add_argument("--cache", help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=("memory", "disk"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(training_pass(a)))
        return
    if min(a.sizes) < 1:
        p.error("--sizes must be positive")
    from liteda.image_cache import available_cpus
    from liteda.utils import atomic_write_text, write_json

    load0 = os.getloadavg()[0]
    doc = measure(a)
    doc.update({"machine": machine(available_cpus()), "load": [load0, os.getloadavg()[0]], "threads": a.threads,
                "workers": a.workers, "rounds": a.rounds, "read_images": a.read_images, "image_size": a.image_size, "size": a.size, "crop": a.crop})
    command = "python benchmarks/image_cache.py " + shown_flags(sys.argv[1:])
    write_json(Path(a.out).with_suffix(".json"), doc)
    atomic_write_text(Path(a.out).with_suffix(".md"), to_md(doc, command))
    print(to_md(doc, command))


if __name__ == "__main__":
    main()
