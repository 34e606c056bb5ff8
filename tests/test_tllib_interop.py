"""Working with tllib itself: the compatibility shims, LiteDA's backbones in tllib's examples, tllib checkpoints
into LiteDA run folders, tllib's own losses behind ``--tllib-losses`` (docs/tllib.md).

Tests marked ``needs_tllib`` skip cleanly when tllib is not importable; with tllib installed from its repository
(``pip install --no-deps -e Transfer-Learning-Library``, or on PYTHONPATH) they run. The others need no tllib: the
shims, the importer on a state dict of tllib's layout, the one-line errors.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from conftest import make_folder_dataset
from torch import nn

from liteda.adaptation import METHODS
from liteda.adaptation.base import Step
from liteda.classifier import build_classifier, load_classifier
from liteda.interop import tllib_compat, tllib_losses
from liteda.interop.tllib_checkpoint import load_tllib_classifier
from liteda.interop.tllib_checkpoint import main as import_main
from liteda.record import read_record
from liteda.utils import UserError

HAS_TLLIB = tllib_compat.available()
needs_tllib = pytest.mark.skipif(not HAS_TLLIB, reason="tllib is not installed (docs/tllib.md)")
NC, BOTTLENECK, SIZE = 3, 32, 32


def x_batch(n: int = 4, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- shims (no tllib needed)
def test_shims_put_back_the_names_tllib_imports():
    tllib_compat.apply()
    tllib_compat.apply()  # idempotent
    from torch.utils.data.dataset import T_co
    from torchvision.models.resnet import model_urls
    from torchvision.models.utils import load_state_dict_from_url

    assert T_co.__covariant__
    assert set(tllib_compat.RESNETS) <= set(model_urls) and model_urls["resnet50"].endswith(".pth")
    assert load_state_dict_from_url is torch.hub.load_state_dict_from_url
    assert sum(isinstance(f, tllib_compat.TllibNumpyFinder) for f in sys.meta_path) == 1


def test_numpy_aliases_reach_only_the_hooked_package(tmp_path, monkeypatch):
    """The import hook gives the removed aliases (np.float, np.int) to the package it watches and to no one else:
    shown on a stand-in package, the same mechanism the hook applies to ``tllib``."""
    import numpy as np

    pkg = tmp_path / "legacy_np_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "old.py").write_text("import numpy as np\n\ndef coeff(x):\n    return np.float(np.exp(x)) + np.int(1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    class Finder(tllib_compat.TllibNumpyFinder):
        package = "legacy_np_pkg"

    finder = Finder()
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    try:
        import legacy_np_pkg.old as old

        assert old.coeff(0.0) == 2.0 and old.np.float is float and old.np.exp is np.exp
        assert "float" not in np.__dict__  # numpy itself is left as it is
    finally:
        for name in ("legacy_np_pkg.old", "legacy_np_pkg"):
            sys.modules.pop(name, None)


def test_missing_tllib_is_an_import_error_saying_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tllib", None)  # import of tllib fails as if it were not installed
    with pytest.raises(ImportError, match="pip install"):
        tllib_compat.import_tllib()
    assert not tllib_compat.available()


def test_tllib_losses_flag_without_tllib_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tllib", None)
    args = method_args("dann", ["--tllib-losses"])
    with pytest.raises(UserError, match="--tllib-losses: tllib is not installed"):
        METHODS.get("dann")(FeatureModel(), NC, args, 100)


# ----------------------------------------------------------------------------- checkpoints of tllib's layout
def save_checkpoint(state: dict, log: Path) -> Path:
    """Where and how tllib's examples save: ``torch.save(classifier.state_dict(), LOG/checkpoints/best.pth)``."""
    (log / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save(state, log / "checkpoints" / "best.pth")
    return log / "checkpoints" / "best.pth"


def reference_model(seed: int = 0) -> nn.Module:
    """tllib's DANN/CDAN/MCC/JAN ``ImageClassifier`` layout (backbone -> Linear-BN-ReLU -> Linear), weights
    and BN statistics non-trivial."""
    torch.manual_seed(seed)
    m = build_classifier("mobilenet_v3_small", NC, pretrained=False, bottleneck_dim=BOTTLENECK)
    with torch.no_grad():
        m.train()(x_batch(8, seed=seed + 1))  # running statistics that are not the initial ones
    return m.eval()


def import_args(ckpt: Path, data: Path, tmp: Path, *extra: str) -> list[str]:
    return [str(ckpt), str(data), "-d", "Custom", "-s", "src", "-t", "tgt", "--val-resizing", "res.",
            "--resize-size", str(SIZE), "--runs-root", str(tmp / "runs"), "--cache-dir", str(tmp / "cache"),
            "--no-progress", *extra]


def test_import_a_checkpoint_of_tllibs_layout_into_a_run_folder(tiny_dataset, tmp_path):
    ref = reference_model()
    state = {f"module.{k}": v for k, v in ref.state_dict().items()}  # DataParallel's prefix is dropped
    save_checkpoint(state, tmp_path / "logs" / "dann")
    res = import_main(import_args(tmp_path / "logs" / "dann", tiny_dataset, tmp_path, "--name", "dann", "--seed", "2"))
    run = tmp_path / "runs" / "Custom" / "src2tgt" / "dann" / "seed2"
    rec = read_record(run)
    assert rec.kind == "adapt" and rec.name == "dann" and rec.seed == 2 and rec.label == "dann (tllib)"
    assert rec.dataset.protocol == "transductive" and rec.dataset.classes == ["a", "b", "c"]
    assert (rec.transform.resize, rec.transform.crop) == (SIZE, SIZE) and rec.splits_dir(run).is_dir()
    model, _ = load_classifier(rec.path(run, "model"))
    x = x_batch()
    with torch.no_grad():
        assert torch.equal(model.eval()(x), ref(x))
    saved = json.loads((run / "results.json").read_text())
    assert saved["imported_from"]["layout"] == "bn" and 0 <= saved["target_test"]["acc"] <= 100
    assert res["target_test"]["acc"] == saved["target_test"]["acc"] and saved["protocol"] == "transductive"


def test_imported_run_goes_on_to_compress_and_bench(tiny_dataset, tmp_path):
    """What the importer is for: a tllib model straight into LiteDA's compress and bench stages."""
    from liteda.compress.cli import main as compress_main
    from liteda.deploy.cli import bench_main

    save_checkpoint(reference_model().state_dict(), tmp_path / "logs" / "mcc")
    import_main(import_args(tmp_path / "logs" / "mcc", tiny_dataset, tmp_path, "--name", "mcc", "--out",
                            str(tmp_path / "run")))
    run, cache = tmp_path / "run", ["--cache-dir", str(tmp_path / "cache")]
    out = tmp_path / "int8"
    res = compress_main(["--run", str(run), "--out", str(out), "--quantize", "ptsq", "--calib-batches", "2",
                         "--ft-epochs", "1", "--ft-iters", "1", "-b", "8", "--no-progress", "--latency-runs", "3",
                         *cache])
    assert res["techniques"] and read_record(out).parent(out, "model") == run
    doc = bench_main(["--run", str(out), "--iters", "3", "--warmup", "1", "--calib-size", "8", "--threads", "1",
                      "--runtime", "torch", *cache])
    assert doc["rows"] and 0 <= doc["rows"][0]["acc"] <= 100


def test_dan_bottleneck_gets_an_identity_batchnorm(tmp_path):
    """tllib's DAN bottleneck is Linear-ReLU-Dropout: the imported model computes exactly that."""
    ref = reference_model()
    state = {k: v for k, v in ref.state_dict().items() if not k.startswith("bottleneck.1.")}
    model, info = load_tllib_classifier(save_checkpoint(state, tmp_path / "dan"))
    x = x_batch()
    with torch.no_grad():
        expected = ref.head(torch.relu(ref.bottleneck[0](ref.backbone(x))))
        assert info["layout"] == "plain" and torch.allclose(model(x), expected, atol=1e-6)


def test_classifier_without_bottleneck(tmp_path):
    torch.manual_seed(0)
    ref = build_classifier("mobilenet_v3_small", NC, pretrained=False, bottleneck_dim=0).eval()
    model, info = load_tllib_classifier(save_checkpoint(ref.state_dict(), tmp_path / "erm"))
    x = x_batch()
    with torch.no_grad():
        assert info["layout"] == "none" and info["bottleneck_dim"] == 0 and torch.equal(model(x), ref(x))


@pytest.mark.parametrize("case, message", [
    ("mdd", "multi-layer head"), ("arch", "does not fit -a mobilenet_v3_large"), ("classes", "has 3 classes"),
    ("missing", "does not exist"), ("folder", "checkpoints/best.pth"),
])
def test_bad_checkpoints_are_one_line_errors(case, message, tiny_dataset, tmp_path):
    state = reference_model().state_dict()
    ckpt = tmp_path / "log" / "checkpoints" / "best.pth"
    extra: list[str] = []
    if case == "mdd":  # tllib's MDD classifier: two-layer head and an adversarial head
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        state.update({"head.0.weight": torch.zeros(8, BOTTLENECK), "head.3.weight": torch.zeros(NC, 8),
                      "adv_head.0.weight": torch.zeros(8, BOTTLENECK)})
    elif case == "arch":
        extra = ["-a", "mobilenet_v3_large"]
    elif case == "classes":
        data = make_folder_dataset(tmp_path / "two", classes=("a", "b"), per_class=8)
        tiny_dataset = data
    if case == "missing":
        ckpt = tmp_path / "nowhere.pth"
    elif case == "folder":
        ckpt = tmp_path / "empty_log"
        ckpt.mkdir()
    else:
        save_checkpoint(state, ckpt.parents[1])
    with pytest.raises(UserError, match=message):
        import_main(import_args(ckpt, tiny_dataset, tmp_path, *extra))


# ----------------------------------------------------------------------------- tllib's losses
class FeatureModel(nn.Module):
    """What a method reads off the model it adapts: the bottleneck width."""

    features_dim = 16


def method_args(name: str, extra: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    METHODS.get(name).add_args(p)
    return p.parse_args(extra)


def takes_tllib_losses(name: str) -> bool:
    p = argparse.ArgumentParser()
    METHODS.get(name).add_args(p)
    return "--tllib-losses" in p._option_string_actions


TLLIB_METHODS = [m for m in METHODS.names() if m not in ("source_only", "kd") and takes_tllib_losses(m)]
VARIANTS = {"cdan": [["--randomized", "--randomized-dim", "64"]], "dan": [["--linear"]], "jan": [["--linear"]]}
CASES = [(m, extra) for m in TLLIB_METHODS for extra in [[], *VARIANTS.get(m, [])]]


def test_the_methods_tllib_has_take_the_flag():
    assert {"dann", "cdan", "cdan_e", "mcc", "mdd", "dan", "jan"} <= set(TLLIB_METHODS)


def to_tllib_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A LiteDA method's state under the names of the same method holding tllib's modules: tllib's loss sits
    inside the float32 adapter (``.loss``) and nests the discriminator's last Linear with its Sigmoid."""
    out = {}
    for k, v in state.items():
        for owner in ("domain_adv", "mkmmd", "jmmd", "mcc", "mdd"):
            if k.startswith(owner + "."):
                k = f"{owner}.loss.{k[len(owner) + 1:]}"
        if ".domain_discriminator." in k:
            head, _, tail = k.partition(".domain_discriminator.")
            k = head + ".domain_discriminator." + next(iter(tllib_losses.discriminator_state_for_tllib({tail: v})))
        out[k] = v
    return out


def step_inputs(b: int = 8, d: int = 16, c: int = NC, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"f_s": torch.randn(b, d, generator=g), "f_t": torch.randn(b, d, generator=g) + 0.5,
            "logits_s": torch.randn(b, c, generator=g) * 2, "logits_t": torch.randn(b, c, generator=g) * 2}


def run_step(method, inputs: dict[str, torch.Tensor]) -> tuple[float, dict, dict[str, torch.Tensor]]:
    torch.manual_seed(1)  # the same dropout masks (MDD's adversarial head) in both
    leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    b = len(leaves["f_s"])
    step = Step(torch.zeros(b, 3, 2, 2), torch.arange(b) % NC, leaves["logits_s"], leaves["f_s"],
                torch.zeros(b, 3, 2, 2), leaves["logits_t"], leaves["f_t"], iteration=500, total_iters=1000)
    loss, stats = method(step)
    loss.backward()
    return float(loss.detach()), stats, {k: v.grad for k, v in leaves.items() if v.grad is not None}


@needs_tllib
@pytest.mark.parametrize("name, extra", CASES, ids=[" ".join([m, *e]) for m, e in CASES])
def test_tllib_losses_give_the_same_values_and_gradients(name, extra):
    """The same method built twice from the same seed, once with LiteDA's loss and once with tllib's, the
    discriminator / adversarial head / random map copied across: same loss, same gradients on the same inputs."""
    cls = METHODS.get(name)
    torch.manual_seed(0)
    own = cls(FeatureModel(), NC, method_args(name, extra), 1000).train()
    torch.manual_seed(0)
    theirs = cls(FeatureModel(), NC, method_args(name, [*extra, "--tllib-losses"]), 1000).train()
    assert own.losses == "liteda" and theirs.losses == "tllib"
    assert theirs.config()["losses"] == "tllib" and theirs.resume_fields() == "losses=tllib"
    for buf in own.buffers():  # reversal layers half-way up their ramp: their gradients are not zero
        if buf.dtype == torch.long and buf.dim() == 0:
            buf.fill_(500)
    theirs.load_state_dict(to_tllib_names(own.state_dict()), strict=True)
    inputs = step_inputs()
    v_own, s_own, g_own = run_step(own, inputs)
    v_theirs, s_theirs, g_theirs = run_step(theirs, inputs)
    offset = tllib_losses.mmd_offset(len(inputs["f_s"])) if name in ("dan", "jan") else 0.0
    assert v_theirs == pytest.approx(v_own + offset, rel=1e-5, abs=1e-6)
    assert g_own.keys() == g_theirs.keys() and g_own
    for k in g_own:
        assert torch.allclose(g_own[k], g_theirs[k], rtol=1e-4, atol=1e-6), k
    for k in s_own:  # domain accuracy, reversal coefficient, disparity
        assert s_theirs[k] == pytest.approx(s_own[k], rel=1e-5, abs=1e-6), k


@needs_tllib
def test_adapt_with_tllib_losses_trains_records_and_resumes_only_alike(run_args, tmp_path):
    from liteda.runner import main

    res = main("dann", "adapt", run_args("--tllib-losses", "--epochs", "1"))
    assert res["method_config"]["losses"] == "tllib" and res["method"] == "dann"
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ck["resume_key"]["method_settings"] == "losses=tllib"
    with pytest.raises(UserError):  # the same run folder resumed with LiteDA's losses
        main("dann", "adapt", run_args("--epochs", "2", "--resume"))


# ----------------------------------------------------------------------------- tllib's examples with LiteDA
@pytest.fixture(scope="module")
def hook():
    if not HAS_TLLIB:
        pytest.skip("tllib is not installed (docs/tllib.md)")
    import liteda.interop.tllib as hook

    return hook


def example_dir() -> Path:
    import tllib

    folder = Path(tllib.__file__).resolve().parents[1] / "examples" / "domain_adaptation" / "image_classification"
    if not (folder / "dann.py").is_file():
        pytest.skip("tllib is installed without its examples/ folder")
    return folder


@needs_tllib
def test_the_hook_puts_liteda_backbones_into_tllibs_lookup(hook, tmp_path, monkeypatch):
    import tllib.vision.models as models
    from tllib.alignment.dann import ImageClassifier

    folder = example_dir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "utils", raising=False)
    import utils  # the examples' own module: -a choices and get_model

    monkeypatch.setitem(sys.modules, "utils", utils)  # removed again after the test

    assert {"mobilenet_v3_small", "mobilenet_v3_large"} <= set(utils.get_model_names())
    torch.manual_seed(0)
    backbone = utils.get_model("mobilenet_v3_small", pretrain=False)
    tllib_model = ImageClassifier(backbone, NC, bottleneck_dim=BOTTLENECK).eval()
    liteda_model = build_classifier("mobilenet_v3_small", NC, pretrained=False, bottleneck_dim=BOTTLENECK)
    assert tllib_model.state_dict().keys() == liteda_model.state_dict().keys()  # one layout, one checkpoint format
    liteda_model.load_state_dict(tllib_model.state_dict())
    with torch.no_grad():
        assert torch.allclose(tllib_model(x_batch()), liteda_model.eval()(x_batch()), atol=1e-6)

    import torchvision

    weights = tmp_path / "mbv3s.pth"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), weights)
    hook.register_backbones({"mobilenet_v3_small": weights})
    try:
        loaded = models.mobilenet_v3_small(pretrained=True)  # offline: the local file, not a download
        expected = torch.load(weights, weights_only=True)["features.0.0.weight"]
        assert torch.equal(loaded.features[0][0].weight, expected)
    finally:
        hook.WEIGHTS.clear()
    with pytest.raises(UserError, match="does not exist"):
        hook.register_backbones({"mobilenet_v3_small": tmp_path / "none.pth"})


@needs_tllib
def test_tllibs_resnet_checkpoint_imports_onto_the_timm_backbone(hook, tmp_path):
    import tllib.vision.models as models
    from tllib.alignment.dann import ImageClassifier

    torch.manual_seed(0)
    ref = ImageClassifier(models.resnet18(pretrained=False), NC, bottleneck_dim=BOTTLENECK).eval()
    model, info = load_tllib_classifier(save_checkpoint(ref.state_dict(), tmp_path / "r18"), "resnet18")
    with torch.no_grad():
        assert info["layout"] == "bn" and torch.allclose(model(x_batch()), ref(x_batch()), atol=1e-5)


@needs_tllib
def test_tllibs_dann_example_trains_with_liteda_backbone_and_its_checkpoint_imports(hook, tmp_path):
    """The user's commands: tllib's own dann.py with ``-a mobilenet_v3_small`` through the wrapper, then its
    best.pth into a LiteDA run whose model computes what tllib's classifier computes."""
    from tllib.alignment.dann import ImageClassifier

    script = example_dir() / "dann.py"
    data = make_folder_dataset(tmp_path / "oc", domains=("amazon", "dslr", "webcam", "caltech"),
                               classes=tuple("abcdefghij"), per_class=5)  # tllib's OfficeCaltech: 10 classes
    log = tmp_path / "logs" / "dann"
    cmd = [sys.executable, "-m", "liteda.interop.tllib_example", str(script), str(data), "-d", "OfficeCaltech",
           "-s", "A", "-t", "W", "-a", "mobilenet_v3_small", "--scratch", "--train-resizing", "res.",
           "--val-resizing", "res.", "--resize-size", str(SIZE), "-b", "4", "-i", "2", "--epochs", "1", "-j", "0",
           "--seed", "0", "--bottleneck-dim", str(BOTTLENECK), "--log", str(log)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LITEDA_THREADS": "1"}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "test_acc1" in done.stdout and (log / "checkpoints" / "best.pth").is_file()

    import_main([str(log), str(data), "-d", "OfficeCaltech", "-s", "A", "-t", "W", "--val-resizing", "res.",
                 "--resize-size", str(SIZE), "--name", "dann", "--runs-root", str(tmp_path / "runs"),
                 "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    run = tmp_path / "runs" / "OfficeCaltech" / "A2W" / "dann" / "seed0"
    model, _ = load_classifier(read_record(run).path(run, "model"))
    torch.manual_seed(0)
    tllib_model = ImageClassifier(hook.tllib_builder("mobilenet_v3_small")(pretrained=False), 10,
                                  bottleneck_dim=BOTTLENECK)
    tllib_model.load_state_dict(torch.load(log / "checkpoints" / "best.pth", weights_only=True))
    with torch.no_grad():
        assert torch.allclose(model.eval()(x_batch()), tllib_model.eval()(x_batch()), atol=1e-5)


def test_the_example_wrapper_needs_an_existing_script(tmp_path):
    from liteda.interop.tllib_example import main

    with pytest.raises(UserError, match="does not exist"):
        main([str(tmp_path / "dann.py"), "ROOT"])
    with pytest.raises(UserError, match="ARCH=PATH"):
        main(["--weights", "mobilenet_v3_small", str(tmp_path / "dann.py")])
