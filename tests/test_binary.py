"""Binary (XNOR-Net) convolutions: the forward against a hand computation, the straight-through gradient, the
BatchNorm fold, save/reload, packed size and operation counts, ONNX Runtime, static INT8 around binary layers, and
the technique through `liteda compress` (tiny, 32 px)."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from conftest import TINY, make_folder_dataset
from torch import nn

from liteda.classifier import build_classifier
from liteda.compress import load_compressed, save_compressed
from liteda.compress.binary import (BinaryConv2d, binarize, binary_measures, fold_batchnorm, input_channel_means,
                                    select_layers, sign_ste)
from liteda.compress.measure import state_dict_mb
from liteda.metrics import count_flops
from liteda.utils import UserError

SIZE = 32
BASE = {"arch": "mobilenet_v3_small", "num_classes": 3, "bottleneck_dim": 32, "classes": ["a", "b", "c"],
        "crop_size": SIZE, "mean": [], "std": []}
LAST_THREE = ["backbone.features.9.block.0.0", "backbone.features.9.block.3.0", "backbone.features.10.block.0.0",
              "backbone.features.10.block.3.0", "backbone.features.11.block.0.0", "backbone.features.11.block.3.0"]


def images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def binary_model() -> tuple[nn.Module, dict]:
    """A scratch MBV3-Small with real BatchNorm statistics (so logits vary between inputs), its last three
    blocks' pointwise convs binarised, thresholds from data, BatchNorms folded; and the op that records it."""
    from liteda.compress.finetune import recalibrate_bn

    torch.set_num_threads(1)
    torch.manual_seed(0)
    m = build_classifier("mobilenet_v3_small", 3, pretrained=False, bottleneck_dim=32)
    loader = [(images(16, s), None) for s in range(4)]
    recalibrate_bn(m, [loader], batches=4)
    names = select_layers(m, "pointwise", 9)
    binarize(m, names, "k", input_channel_means(m, names, (x for x, _ in loader)))
    recalibrate_bn(m, [loader], batches=4)
    folded = fold_batchnorm(m, names)
    return m.eval(), {"op": "binary", "layers": names, "act_scale": "k", "folded_bn": folded}


def test_forward_matches_a_hand_computation():
    conv = BinaryConv2d(2, 2, bias=True)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[0.5, 0.25], [-1.0, 0.0]])[:, :, None, None])  # α = 0.375, 0.5
        conv.threshold.copy_(torch.tensor([0.1, -0.2]))
        conv.bias.copy_(torch.tensor([0.05, -0.1]))
    x = torch.tensor([[0.3, 0.1], [-0.5, 0.4]])[None, :, None, :]  # 2 channels x 2 positions
    # shifted inputs (0.2, -0.3) and (0.0, 0.6): signs (+1, -1) and (+1, +1) (sign 0 -> +1); sign(W) = [[1, 1],
    # [-1, +1]]; K = mean |shifted| = 0.25 and 0.3
    expected_k = torch.tensor([[0.05, 2 * 0.375 * 0.3 + 0.05], [-2 * 0.5 * 0.25 - 0.1, -0.1]])
    expected_signs_only = torch.tensor([[0.05, 2 * 0.375 + 0.05], [-2 * 0.5 - 0.1, -0.1]])
    with torch.no_grad():
        assert torch.allclose(conv.eval()(x)[0, :, 0], expected_k, atol=1e-6)
        assert torch.equal(conv.train()(x), conv.eval()(x))  # the STE changes gradients only
        conv.act_scale = "none"
        assert torch.allclose(conv(x)[0, :, 0], expected_signs_only, atol=1e-6)


def test_straight_through_gradient_is_the_clipped_identity():
    x = torch.tensor([-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 3.0], requires_grad=True)
    y = sign_ste(x, ste=True)
    assert torch.equal(y, torch.tensor([-1.0, -1, -1, -1, 1, 1, 1, 1, 1]))
    (y * torch.arange(1.0, 10.0)).sum().backward()
    inside = x.detach().abs() <= 1
    assert torch.equal(x.grad[inside], torch.arange(1.0, 10.0)[inside])  # identity where |x| <= 1
    assert torch.equal(x.grad[~inside], torch.zeros(int((~inside).sum())))  # zero where |x| > 1

    conv = BinaryConv2d(4, 3).train()
    with torch.no_grad():
        conv.weight.normal_()
    conv(torch.randn(2, 4, 3, 3)).sum().backward()
    for grad in (conv.weight.grad, conv.threshold.grad):  # both signs pass gradients: weights and thresholds learn
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_batchnorm_fold_is_exact():
    torch.manual_seed(0)
    seq = nn.Sequential(BinaryConv2d(6, 5), nn.BatchNorm2d(5))
    with torch.no_grad():
        seq[0].weight.normal_()
        seq[1].weight.normal_()  # negative γ too: the fold flips those channels' signs
        seq[1].bias.normal_()
        seq[1].running_mean.normal_()
        seq[1].running_var.uniform_(0.5, 2.0)
    x = torch.randn(3, 6, 4, 4)
    with torch.no_grad():
        before = seq.eval()(x)
        assert fold_batchnorm(seq, ["0"]) == {"0": "1"} and isinstance(seq[1], nn.Identity)
        assert torch.allclose(seq(x), before, atol=1e-5)


def test_layer_selection_and_one_line_errors():
    m = build_classifier("mobilenet_v3_small", 3, pretrained=False, bottleneck_dim=32)
    assert select_layers(m, "pointwise", 9) == LAST_THREE
    assert select_layers(m, "expand", 10) == LAST_THREE[2::2] and select_layers(m, "project", 10) == LAST_THREE[3::2]
    assert select_layers(m, "pointwise+last", 11) == LAST_THREE[4:] + ["backbone.features.12.0"]
    assert select_layers(m, "expand", 1)[0] == "backbone.features.2.block.0.0"  # block 1 has no expansion conv
    assert not any(".fc" in n for n in select_layers(m, "pointwise", 1))  # squeeze-excite convs stay float
    with pytest.raises(UserError, match=r"--binary-from-block must be in \[1, 11\]"):
        select_layers(m, "pointwise", 12)
    with pytest.raises(UserError, match="no inverted-residual blocks"):
        select_layers(nn.Sequential(nn.Conv2d(3, 4, 1)), "pointwise", 1)


def test_save_reload_gives_identical_outputs(binary_model, tmp_path):
    m, op = binary_model
    save_compressed(m, BASE, [op], tmp_path / "b.pt")
    torch.load(tmp_path / "b.pt", weights_only=True)  # plain tensors and primitives only
    r, _ = load_compressed(tmp_path / "b.pt")
    x = images(8, 50)
    with torch.no_grad():
        y = m(x)
        assert torch.equal(r(x), y) and y.std(0).mean() > 0  # identical, on outputs that vary between inputs
    assert sum(isinstance(mod, BinaryConv2d) for mod in r.modules()) == 6


def test_packed_size_and_operation_counts(binary_model):
    m, _ = binary_model
    macs = count_flops(m, SIZE)["macs"]
    sd_mb = state_dict_mb(m)
    b = binary_measures(m, SIZE, macs, sd_mb)["binary"]
    layers = [m.get_submodule(n) for n in LAST_THREE]
    n_weights = sum(c.weight.numel() for c in layers)
    assert b["binary_weights"] == n_weights and b["layers"] == LAST_THREE
    # 32 bits -> 1 bit per weight, plus one float32 α per output channel
    packed = sum(c.out_channels * (c.in_channels // 8 + 4) for c in layers)
    assert b["binary_weight_mb_float"] == pytest.approx(4 * n_weights / 1e6)
    assert b["binary_weight_mb_packed"] == pytest.approx(packed / 1e6)
    assert b["binary_weight_mb_float"] / b["binary_weight_mb_packed"] > 22  # 32 / (1 + 32 / c_in), c_in >= 48
    assert b["packed_mb"] == pytest.approx(sd_mb - (4 * n_weights - packed) / 1e6)
    # at 32 px block 9's expansion conv (48 -> 288) runs on a 2x2 map, the other five on 1x1 maps
    bops = n_weights + 3 * 48 * 288
    assert b["bops"] == bops and b["float_macs"] == macs - bops
    assert b["equivalent_macs"] == pytest.approx(macs - bops + bops / 64)
    assert binary_measures(build_classifier("mobilenet_v3_small", 3, pretrained=False, bottleneck_dim=32), SIZE,
                           macs, sd_mb) == {}  # no binary layer: no new keys


def test_onnx_runtime_runs_the_export_and_matches_pytorch(binary_model, tmp_path):
    import onnx

    from liteda.deploy.onnx import export_onnx, onnx_logits

    m, _ = binary_model
    x = images(8, 60)
    info = export_onnx(m, tmp_path / "b.onnx", SIZE, check_images=x)
    with torch.no_grad():
        y = m(x).numpy()
    assert np.allclose(onnx_logits(tmp_path / "b.onnx", x.numpy()), y, atol=1e-4)
    assert info["top1_agree_vs_torch"] == 100.0
    ops = {n.op_type for n in onnx.load(str(tmp_path / "b.onnx")).graph.node}
    assert {"GreaterOrEqual", "Where"} <= ops  # the activation signs run in the graph


def test_static_int8_keeps_binary_layers_float_and_exact(binary_model, tmp_path):
    """PTSQ around binary layers: every other conv INT8, the binary layers float ops on ±1 values (one FX node
    each, latent weights untouched), saved, reloaded, and exported as QDQ ONNX that ONNX Runtime runs."""
    from liteda.compress.quantize import float_ops, quantize_static
    from liteda.deploy.onnx import export_onnx, onnx_logits

    m, op = binary_model
    q, _ = quantize_static(copy.deepcopy(m), SIZE, [images(16, s) for s in range(2)])
    assert [o["op"] for o in float_ops(q)].count("binary_conv2d") == 6
    q_state = q.state_dict()
    for name in LAST_THREE:  # latent weights kept as they are: sign(W)·α is computed, not folded into INT8
        assert torch.equal(q_state[f"{name}.weight"], m.get_submodule(name).weight)
    x = images(8, 70)
    with torch.no_grad():
        yq = q(x)
    save_compressed(q, BASE, [op, {"op": "quantize", "kind": "ptsq"}], tmp_path / "q.pt", float_model=m)
    r, _ = load_compressed(tmp_path / "q.pt")
    with torch.no_grad():
        assert torch.equal(r(x), yq)
    q_mb = state_dict_mb(q)
    b = binary_measures(m, SIZE, count_flops(m, SIZE)["macs"], q_mb)["binary"]
    # the latent float32 weights in the INT8 file, replaced by their 1-bit signs and α
    assert b["packed_mb"] == pytest.approx(q_mb - b["binary_weight_mb_float"] + b["binary_weight_mb_packed"])
    # runs, but not to PyTorch's numbers: the two runtimes' INT8 requantization differs by one step at times, and
    # one step at a binarisation threshold flips a sign (benchmarks/binary_layers.py measures the agreement)
    export_onnx(q, tmp_path / "q.onnx", SIZE, check_images=x)
    out = onnx_logits(tmp_path / "q.onnx", x.numpy())
    assert out.shape == (8, 3) and np.isfinite(out).all()


def test_cli_binary_stage_reports_packed_size_and_bops(tmp_path):
    """`liteda compress --binary`: the stage is recorded with its layers and folded BatchNorms, the results carry
    the binary measures beside the unchanged keys, and a bad flag is one line before anything is loaded."""
    from liteda.compress.cli import main
    from liteda.runner import main as run_main

    with pytest.raises(UserError, match="--binary-from-block must be >= 1"):
        main(["--run", str(tmp_path / "none"), "--binary", "--binary-from-block", "0"])
    data = make_folder_dataset(tmp_path / "data")
    run = tmp_path / "runs" / "Custom" / "src2tgt" / "source_only" / "seed0"
    run_main("source_only", "source_only", [str(data), "-d", "Custom", "-s", "src", "-t", "tgt", *TINY, "--epochs",
                                            "1", "-i", "1", "--cache-dir", str(tmp_path / "cache"), "--runs-root",
                                            str(tmp_path / "runs"), "--log", str(run), "--bottleneck-dim", "32"])
    out = tmp_path / "out"
    with pytest.raises(UserError, match="--binary-from-block must be in"):
        main(["--run", str(run), "--out", str(tmp_path / "x"), "--binary", "--binary-from-block", "12",
              "--ft-epochs", "0", "--no-progress", "--latency-runs", "2", "--cache-dir", str(tmp_path / "cache")])
    res = main(["--run", str(run), "--out", str(out), "--binary", "--binary-from-block", "11", "--ft-epochs", "1",
                "--ft-iters", "1", "-b", "8", "--no-progress", "--latency-runs", "2", "--cache-dir",
                str(tmp_path / "cache")])
    assert res["techniques"] == ["binary"] and res["reload_max_abs_diff"] == 0.0
    op = torch.load(out / "compressed.pt", weights_only=True)["ops"][0]
    assert op["layers"] == LAST_THREE[4:] and op["folded_bn"] == {n: n[:-1] + "1" for n in LAST_THREE[4:]}
    after = json.loads((out / "results.json").read_text())["after"]
    assert {"params", "macs", "flops", "state_dict_mb", "file_mb", "target_test"} <= set(after)
    b = after["binary"]
    assert b["bops"] > 0 and b["float_macs"] + b["bops"] == after["macs"]
    assert b["packed_mb"] < after["state_dict_mb"] - 0.9 * b["binary_weight_mb_float"]
    assert "binary" not in res["before"]
