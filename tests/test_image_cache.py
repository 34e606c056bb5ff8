"""The disk-backed decoded-image cache (one build under concurrency, rows read from the mapped file) and the
datasets in tllib's layouts by name (OfficeHome, DomainNet, VisDA2017)."""
from __future__ import annotations

import multiprocessing as mp
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import liteda.image_cache as image_cache
from liteda.datasets import TensorImageDataset, build_transform, load_images, prepare_domains
from liteda.image_cache import MappedImages, decode_image, load_decoded
from liteda.utils import UserError


def _images(root: Path, n: int, size: int = 20, seed: int = 0) -> list[tuple[str, int]]:
    rng = np.random.default_rng(seed)
    items = []
    for k in range(n):
        rel = f"dom/c{k % 3}/{k:03d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size + k % 5, 3), dtype=np.uint8)).save(root / rel)
        items.append((rel, k % 3))
    return items


def _build_in_child(root: str, rels: list[str], cache: str, start, done) -> None:
    start.wait()  # both processes find the cache missing at once
    images, keep = load_decoded(Path(root), rels, 16, cache, in_memory=False, workers=2)
    done.put((len(images), len(keep)))


def test_two_processes_building_one_cache_end_with_one_entry_equal_to_a_direct_decode(tmp_path):
    items = _images(tmp_path / "data", 70)  # above PARALLEL_MIN_IMAGES: each builder starts worker processes
    rels = [p for p, _ in items]
    ctx = mp.get_context("spawn")
    start, done = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_build_in_child, args=(str(tmp_path / "data"), rels, str(tmp_path / "cache"),
                                                       start, done)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert [done.get(timeout=5) for _ in procs] == [(70, 70), (70, 70)]
    files = sorted(p.name for p in (tmp_path / "cache").iterdir() if p.name != ".build.lock")
    assert len(files) == 2 and {Path(f).suffix for f in files} == {".npy", ".json"}  # no temporaries left
    images, labels = load_images(tmp_path / "data", items, 16, tmp_path / "cache", in_memory=False)
    direct = np.stack([decode_image(tmp_path / "data" / rel, 16) for rel in rels])
    assert np.array_equal(np.asarray(images.array), direct) and labels.tolist() == [y for _, y in items]


def test_a_dataset_over_the_cache_reads_rows_from_the_mapped_file(tmp_path, monkeypatch):
    items = _images(tmp_path / "data", 12)
    in_ram, labels = load_images(tmp_path / "data", items, 16, tmp_path / "cache")
    assert isinstance(in_ram, torch.Tensor)  # a small list is read whole
    monkeypatch.setattr(image_cache, "IN_MEMORY_MAX_BYTES", 0)
    monkeypatch.setattr(image_cache, "MAP_WINDOW_BYTES", 3 * 16 * 16 * 3)  # re-mapped every third row
    mapped, labels2 = load_images(tmp_path / "data", items, 16, tmp_path / "cache")
    assert isinstance(mapped, MappedImages) and isinstance(mapped.array, np.memmap)
    assert Path(mapped.array.filename).parent.resolve() == (tmp_path / "cache").resolve()  # file-backed
    assert len(pickle.dumps(mapped)) < 1000  # pickled by path: a spawned loader worker maps the file itself
    assert torch.equal(labels, labels2) and mapped.shape == tuple(in_ram.shape)
    assert all(torch.equal(mapped[i], in_ram[i]) for i in range(len(items)))
    assert torch.equal(mapped[2:7], in_ram[2:7]) and torch.equal(mapped[-1], in_ram[-1])
    assert torch.equal(mapped[[7, 0, -2]], in_ram[[7, 0, -2]]) and torch.equal(mapped[torch.tensor([3])], in_ram[[3]])
    assert torch.equal(pickle.loads(pickle.dumps(mapped))[5], in_ram[5])
    ds = TensorImageDataset(mapped, labels2, build_transform(False, 12))
    assert ds.images is mapped and ds[4][0].shape == (3, 12, 12)


def test_a_truncated_cache_file_and_a_killed_builds_temporary_are_dealt_with(tmp_path):
    items = _images(tmp_path / "data", 5)
    first, _ = load_images(tmp_path / "data", items, 16, tmp_path / "cache", in_memory=False)
    npy = Path(first.path)
    del first
    npy.write_bytes(npy.read_bytes()[:-100])
    orphan = tmp_path / "cache" / f".{npy.name}.12345.tmp"
    orphan.write_bytes(b"left by a killed build")
    with pytest.warns(UserWarning, match="damaged"):
        again, _ = load_images(tmp_path / "data", items, 16, tmp_path / "cache", in_memory=False)
    direct = np.stack([decode_image(tmp_path / "data" / rel, 16) for rel, _ in items])
    assert np.array_equal(np.asarray(again.array), direct) and not orphan.exists()


def test_unreadable_images_are_dropped_from_a_parallel_build(tmp_path):
    items = _images(tmp_path / "data", 66)
    (tmp_path / "data" / items[10][0]).write_bytes(b"\x89PNG broken")
    with pytest.warns(UserWarning, match="unreadable"):
        images, labels = load_images(tmp_path / "data", items, 16, tmp_path / "cache", in_memory=False, workers=2)
    kept = [item for k, item in enumerate(items) if k != 10]
    direct = np.stack([decode_image(tmp_path / "data" / rel, 16) for rel, _ in kept])
    assert np.array_equal(np.asarray(images.array), direct) and labels.tolist() == [y for _, y in kept]


# ----------------------------------------------------------------------------- datasets by name
def _tllib_layout(root: Path, domains: dict[str, list[str]], classes: list[str], per_class: int = 5) -> None:
    """``<root>/<folder>/<class>/*.jpg`` and ``image_list/<list>`` files numbering classes in ``classes``'s order
    (tllib's, not sorted), as tllib's archives hold them."""
    (root / "image_list").mkdir(parents=True, exist_ok=True)
    for folder, lists in domains.items():
        lines = []
        for number, cls in enumerate(classes):
            (root / folder / cls).mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                Image.new("RGB", (8, 8), (number * 40, k * 20, 0)).save(root / folder / cls / f"{k}.jpg")
                lines.append(f"{folder}/{cls}/{k}.jpg {number}")
        for part, name in enumerate(lists):  # DomainNet: a domain's images across its train and test lists
            (root / "image_list" / name).write_text("\n".join(lines[part::len(lists)]) + "\n")


def test_officehome_domains_resolve_and_labels_follow_the_class_folders(tmp_path):
    root = tmp_path / "office_home"
    _tllib_layout(root, {"Art": ["Art.txt"], "Clipart": ["Clipart.txt"]}, ["Drill", "Exit_Sign", "Bottle"])
    splits = prepare_domains("OfficeHome", root, ["Ar", "Cl"], tmp_path / "splits")
    assert splits["Ar"].classes == ["Bottle", "Drill", "Exit_Sign"] and splits["Cl"].letter == "Cl"
    assert all(rel.split("/")[1] == splits["Ar"].classes[y] for rel, y in splits["Ar"].all)
    assert {rel.split("/")[0] for rel, _ in splits["Cl"].all} == {"Clipart"} and len(splits["Cl"].all) == 15
    assert (tmp_path / "splits" / "Ar_train.txt").is_file()


def test_domainnet_reads_both_lists_and_visda_its_folders(tmp_path):
    root = tmp_path / "domainnet"
    _tllib_layout(root, {"clipart": ["clipart_train.txt", "clipart_test.txt"],
                         "real": ["real_train.txt", "real_test.txt"]}, ["zebra", "airplane"], per_class=6)
    splits = prepare_domains("DomainNet", root, ["c", "r"], tmp_path / "splits")
    assert splits["c"].classes == ["airplane", "zebra"] and len(splits["r"].all) == 12
    (root / "image_list" / "real_test.txt").unlink()
    with pytest.raises(UserError, match="real_test.txt' does not exist"):
        prepare_domains("DomainNet", root, ["c", "r"], tmp_path / "splits2")

    visda = tmp_path / "visda"
    _tllib_layout(visda, {"train": [], "validation": []}, ["bus", "aeroplane"])  # image_list/ empty: the folders
    splits = prepare_domains("VisDA2017", visda, ["T", "V"], tmp_path / "splits3")
    assert splits["V"].classes == ["aeroplane", "bus"] and {r.split("/")[0] for r, _ in splits["T"].all} == {"train"}


def test_a_missing_domain_folder_is_one_line_naming_it(tmp_path, monkeypatch):
    import urllib.request

    def offline(url, timeout=30.0):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    root = tmp_path / "office_home"
    _tllib_layout(root, {"Art": ["Art.txt"]}, ["Drill", "Bottle"])
    with pytest.raises(UserError) as e:
        prepare_domains("OfficeHome", root, ["Ar", "Cl"], tmp_path / "splits")
    assert f"'{root / 'Clipart'}' is missing" in str(e.value) and "\n" not in str(e.value)
    assert "place Office-Home by hand" in str(e.value) and not (tmp_path / "splits").exists()
    with pytest.raises(UserError, match="unknown domain 'Xy' for dataset OfficeHome"):
        prepare_domains("OfficeHome", root, ["Ar", "Xy"], tmp_path / "splits")


def test_a_list_whose_numbers_name_two_class_folders_is_refused(tmp_path):
    root = tmp_path / "visda"
    _tllib_layout(root, {"train": ["train.txt"], "validation": ["validation.txt"]}, ["bus", "car"])
    (root / "image_list" / "train.txt").write_text("train/bus/0.jpg 0\ntrain/car/0.jpg 0\n")
    with pytest.raises(UserError, match="label 0 names two class folders, 'bus' and 'car'"):
        prepare_domains("VisDA2017", root, ["T", "V"], tmp_path / "splits")


def test_task_names_use_the_domain_letters():
    from argparse import Namespace

    from liteda.runner import task_name

    assert task_name(Namespace(data="OfficeHome", source="Art", target="Cl")) == "Ar2Cl"
    assert task_name(Namespace(data="VisDA2017", source="T", target="validation")) == "T2V"


def test_a_run_trains_and_reports_over_memory_mapped_caches(run_args, tmp_path, monkeypatch):
    """Every list above the in-RAM limit: training, evaluation and results read images from the mapped files."""
    import json

    from liteda.runner import main

    monkeypatch.setattr(image_cache, "IN_MEMORY_MAX_BYTES", 0)
    main("source_only", "source_only", run_args())
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert 0 <= res["target_test"]["acc"] <= 100
    assert list((tmp_path / "cache").glob("*.npy"))
