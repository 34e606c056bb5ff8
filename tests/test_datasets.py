from collections import Counter

import torch

import numpy as np
import pytest
from PIL import Image

from liteda.datasets import (check_same_classes, dataset_spec, list_domain, load_images, prepare_domains,
                              holdout_split, read_image_list, stratified_split, write_image_list)
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


def test_holdout_split_is_seeded_disjoint_and_refuses_an_empty_side():
    items = _items()
    kept, held = holdout_split(items, 0.25, seed=3)
    assert len(held) == 15 and sorted(kept + held) == sorted(items) and not set(kept) & set(held)
    assert holdout_split(items, 0.25, seed=3) == (kept, held) and holdout_split(items, 0.25, seed=4)[1] != held
    with pytest.raises(UserError, match="--select-holdout"):
        holdout_split(items[:2], 0.1)


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
    again = prepare_domains("Custom", tiny_dataset, ["src", "tgt"], tmp_path / "splits")
    assert again["src"].train == splits["src"].train  # reused: every run of the tree sees the same images
    with pytest.raises(UserError, match="split_seed"):  # another split asked for: never the old lists silently
        prepare_domains("Custom", tiny_dataset, ["src", "tgt"], tmp_path / "splits", split_seed=5)


def test_split_lists_refuse_a_changed_dataset(tiny_dataset, tmp_path):
    """A class added after the lists were made: the old lists would train its images under wrong labels."""
    from conftest import make_folder_dataset

    prepare_domains("Custom", tiny_dataset, ["src", "tgt"], tmp_path / "splits")
    make_folder_dataset(tiny_dataset, classes=("a", "b", "c", "cow"))
    with pytest.raises(UserError, match="class folders changed"):
        prepare_domains("Custom", tiny_dataset, ["src", "tgt"], tmp_path / "splits")


def test_symlinked_domains_work_after_the_first_run(tiny_dataset, tmp_path):
    """Domain folders linked in from shared storage: listing follows the links and the written lists read back."""
    linked = tmp_path / "linked"
    linked.mkdir()
    for dom in ("src", "tgt"):
        (linked / dom).symlink_to(tiny_dataset / dom)
    first = prepare_domains("Custom", linked, ["src", "tgt"], tmp_path / "splits")
    again = prepare_domains("Custom", linked, ["src", "tgt"], tmp_path / "splits")
    assert first["tgt"].test == again["tgt"].test and len(first["tgt"].all) == 24
    with pytest.raises(UserError, match="outside the dataset root"):
        (tmp_path / "bad.txt").write_text("../escape.png 0\n")
        read_image_list(tmp_path / "bad.txt", linked)


def test_decode_handles_exif_16_bit_and_oversized_images(tmp_path, recwarn):
    from PIL import Image

    from liteda.datasets import decode_image, load_images

    wide = Image.new("RGB", (40, 20), (255, 0, 0))
    wide.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue
    exif = wide.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the right half ends at the bottom
    wide.save(tmp_path / "rot.jpg", exif=exif)
    img = decode_image(tmp_path / "rot.jpg", 20)
    assert img[2, 10, 0] > 200 and img[17, 10, 2] > 200  # red on top, blue at the bottom
    Image.fromarray(np.full((8, 8), 1000, np.uint16)).save(tmp_path / "deep.png")
    assert 0 < decode_image(tmp_path / "deep.png", 8).mean() < 10  # 1000/65535 of white, not clipped to white
    Image.new("RGB", (64, 64)).save(tmp_path / "big.png")
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 1000  # 4096 px is over twice this: PIL refuses it as a decompression bomb
    try:
        imgs, labels = load_images(tmp_path, [("deep.png", 0), ("big.png", 1)], 8)
    finally:
        Image.MAX_IMAGE_PIXELS = old
    assert labels.tolist() == [0]


def test_a_damaged_cache_entry_is_decoded_again(tiny_dataset, tmp_path):
    from liteda.datasets import load_images

    items = [(f"src/a/{k:03d}.png", 0) for k in range(3)]
    first, _ = load_images(tiny_dataset, items, 16, tmp_path / "cache")
    for npy in (tmp_path / "cache").glob("*.npy"):
        npy.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="damaged"):
        again, _ = load_images(tiny_dataset, items, 16, tmp_path / "cache")
    assert torch.equal(first, again)


def test_image_list_label_beyond_the_classes_is_one_line(tmp_path):
    root = tmp_path / "office"
    for dom in ("amazon", "webcam"):
        (root / dom / "images" / "cls").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(root / dom / "images" / "cls" / "x.jpg")
    (root / "image_list").mkdir()
    for dom in ("amazon", "webcam"):
        (root / "image_list" / f"{dom}.txt").write_text(f"{dom}/images/cls/x.jpg 3\n")
    with pytest.raises(UserError, match="label 3 in its image list, but it has 1 classes"):
        prepare_domains("Office31", root, ["A", "W"], tmp_path / "splits")


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


def test_office31_download_failure_says_how_to_place_files_and_creates_nothing(tmp_path, monkeypatch):
    import urllib.request

    def offline(url, timeout=30.0):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(UserError, match="place Office-31 by hand"):
        prepare_domains("Office31", tmp_path / "office31", ["A", "W"], tmp_path / "splits")
    assert not (tmp_path / "office31").exists() and not (tmp_path / "splits").exists()


def test_office31_download_tries_the_next_mirror_after_a_bad_body(tmp_path, monkeypatch):
    """The first mirror answers with a truncated archive (EOFError/TarError inside): the second one is used."""
    import io
    import tarfile
    import urllib.request

    import liteda.download as dl

    good = io.BytesIO()
    with tarfile.open(fileobj=good, mode="w:gz") as t:
        data = b"x"
        info = tarfile.TarInfo("webcam/images/cls/a.jpg")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    bodies = {"bad": good.getvalue()[:40], "good": good.getvalue()}
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=30.0: io.BytesIO(bodies[url]))
    monkeypatch.setattr(dl, "OFFICE31_FILES", [("webcam", "webcam.tgz", ["bad", "good"])])
    dl.download_office31(tmp_path / "office31")
    assert (tmp_path / "office31" / "webcam" / "images" / "cls" / "a.jpg").read_bytes() == b"x"


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


def test_an_empty_class_folder_is_reported(tiny_dataset):
    (tiny_dataset / "src" / "empty").mkdir()
    (tiny_dataset / "tgt" / "empty").mkdir()
    spec = dataset_spec("Custom", tiny_dataset)
    with pytest.warns(UserWarning, match="class folder .*empty' has no images"):
        items, classes = list_domain(tiny_dataset, spec, "src")
    assert "empty" in classes and len(items) == 24
