from collections import Counter

import numpy as np
import pytest
from PIL import Image

from liteda.datasets import (check_same_classes, dataset_spec, list_domain, load_images, prepare_domains,
                              read_image_list, stratified_split, write_image_list)
from liteda.utils import UserError


def _items(n_per_class=(10, 20, 30)):
    return [(f"c{c}/{i}.png", c) for c, n in enumerate(n_per_class) for i in range(n)]


def test_split_is_deterministic_and_stratified():
    items = _items()
    a_tr, a_te = stratified_split(items, 0.2, seed=0)
    b_tr, b_te = stratified_split(items, 0.2, seed=0)
    assert a_tr == b_tr and a_te == b_te
    assert not set(a_tr) & set(a_te) and len(a_tr) + len(a_te) == len(items)
    assert Counter(y for _, y in a_te) == {0: 2, 1: 4, 2: 6}
    c_tr, _ = stratified_split(items, 0.2, seed=1)
    assert c_tr != a_tr


def test_split_rejects_bad_ratio():
    with pytest.raises(UserError, match="test-ratio"):
        stratified_split(_items(), 1.5)


def test_image_list_roundtrip_and_errors(tmp_path):
    items = [("a/x 1.png", 0), ("b/y.png", 2)]
    write_image_list(tmp_path / "l.txt", items)
    assert read_image_list(tmp_path / "l.txt", tmp_path) == items  # spaces in paths survive
    (tmp_path / "bad.txt").write_text("a/x.png notalabel\n")
    with pytest.raises(UserError, match=r"bad.txt:1"):
        read_image_list(tmp_path / "bad.txt", tmp_path)
    (tmp_path / "out.txt").write_text("../../etc/passwd 0\n")
    with pytest.raises(UserError, match="outside the dataset root"):
        read_image_list(tmp_path / "out.txt", tmp_path)


def test_folder_listing_and_class_mismatch(tiny_dataset):
    spec = dataset_spec("Custom", tiny_dataset)
    items, classes = list_domain(tiny_dataset, spec, "src")
    assert classes == ["a", "b", "c"] and len(items) == 24
    with pytest.raises(UserError, match="class 'd' is missing in domain 'src'"):
        check_same_classes({"src": ["a", "b", "c"], "tgt": ["a", "b", "c", "d"]})


def test_unknown_dataset_and_domain(tiny_dataset):
    with pytest.raises(UserError, match="unknown dataset"):
        dataset_spec("Nope", tiny_dataset)
    with pytest.raises(UserError, match="unknown domain 'X'"):
        prepare_domains("Custom", tiny_dataset, ["X"], tiny_dataset / "splits")
    with pytest.raises(UserError, match="does not exist"):
        prepare_domains("OfficeCaltech", tiny_dataset / "missing", ["A"], tiny_dataset / "splits")


def test_prepare_domains_writes_and_reuses_lists(tiny_dataset, tmp_path):
    splits = prepare_domains("Custom", tiny_dataset, ["src", "tgt"], tmp_path / "splits")
    assert (tmp_path / "splits" / "src_train.txt").is_file()
    assert len(splits["src"].train) + len(splits["src"].test) == 24
    again = prepare_domains("Custom", tiny_dataset, ["src", "tgt"], tmp_path / "splits", split_seed=5)
    assert again["src"].train == splits["src"].train  # the written lists win: every run sees the same images


def test_decode_converts_modes_and_skips_broken_files(tmp_path):
    root = tmp_path / "d"
    (root / "k").mkdir(parents=True)
    Image.fromarray(np.full((20, 30), 128, np.uint8), "L").save(root / "k" / "gray.png")
    Image.new("CMYK", (20, 20)).save(root / "k" / "cmyk.jpg")
    Image.new("RGBA", (20, 20), (255, 0, 0, 10)).save(root / "k" / "rgba.png")
    (root / "k" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    items = [("k/gray.png", 0), ("k/cmyk.jpg", 0), ("k/rgba.png", 1), ("k/broken.jpg", 1)]
    with pytest.warns(UserWarning, match="unreadable"):
        imgs, labels = load_images(root, items, 16, cache_dir=tmp_path / "cache")
    assert imgs.shape == (3, 16, 16, 3) and labels.tolist() == [0, 0, 1]
    with pytest.warns(UserWarning):  # second call comes from the cache, same answer
        imgs2, _ = load_images(root, items, 16, cache_dir=tmp_path / "cache")
    assert (imgs2 == imgs).all() and len(list((tmp_path / "cache").glob("*.npy"))) == 1


def test_embedded_digits_are_deterministic(tmp_path):
    from liteda.digits import make_digits

    make_digits(tmp_path / "a", seed=0)
    make_digits(tmp_path / "b", seed=0)
    fa = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert len(fa) == 1797 and {p.parts[0] for p in fa} == {"digits", "digits_m"}
    one = fa[-1]
    assert (tmp_path / "a" / one).read_bytes() == (tmp_path / "b" / one).read_bytes()
    src = np.asarray(Image.open(next((tmp_path / "a" / "digits").rglob("*.png"))))
    tgt = np.asarray(Image.open(next((tmp_path / "a" / "digits_m").rglob("*.png"))))
    assert (src[..., 0] == src[..., 1]).all() and not (tgt[..., 0] == tgt[..., 1]).all()  # a colour shift


def test_office31_download_failure_says_how_to_place_files(tmp_path, monkeypatch):
    import liteda.download as dl

    def offline(urls, dest, timeout=30.0):
        raise OSError("network unreachable")

    monkeypatch.setattr(dl, "fetch", offline)
    with pytest.raises(UserError, match="place Office-31 by hand"):
        prepare_domains("Office31", tmp_path / "office31", ["A", "W"], tmp_path / "splits")


def test_office31_tllib_layout_with_image_list(tmp_path):
    root = tmp_path / "office31"
    for dom in ("amazon", "webcam"):
        for cls in ("back_pack", "bike"):
            (root / dom / "images" / cls).mkdir(parents=True)
            for k in range(5):
                Image.new("RGB", (8, 8)).save(root / dom / "images" / cls / f"{k}.jpg")
    (root / "image_list").mkdir()
    for dom in ("amazon", "webcam"):
        lines = [f"{dom}/images/{c}/{k}.jpg {i}" for i, c in enumerate(("back_pack", "bike")) for k in range(5)]
        (root / "image_list" / f"{dom}.txt").write_text("\n".join(lines) + "\n")
    splits = prepare_domains("Office31", root, ["A", "W"], tmp_path / "splits")
    assert splits["A"].classes == ["back_pack", "bike"] and len(splits["W"].all) == 10
