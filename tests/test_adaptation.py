"""Adaptation losses (values on fixed inputs, gradient paths and signs) and one tiny run per method."""
import json
import math

import numpy as np
import pytest
import torch
from conftest import TINY, make_folder_dataset
from torch import nn

from liteda.adaptation import METHODS, get_method
from liteda.adaptation.cdan import (CDAN, ConditionalDomainAdversarialLoss, MultiLinearMap,
                                     RandomizedMultiLinearMap, entropy_weights)
from liteda.adaptation.coral import CorrelationAlignmentLoss
from liteda.adaptation.dann import DomainAdversarialLoss, DomainDiscriminator, grl_horizon
from liteda.adaptation.grl import GradientReverseLayer, WarmStartGradientReverseLayer, warm_start_coeff
from liteda.adaptation.iwan import ImportanceWeightModule
from liteda.adaptation.kernels import (GaussianKernel, JointMultipleKernelMaximumMeanDiscrepancy,
                                        MultipleKernelMaximumMeanDiscrepancy)
from liteda.adaptation.mcc import MinimumClassConfusionLoss
from liteda.adaptation.mdd import ClassificationMarginDisparityDiscrepancy
from liteda.adaptation.shot_im import InformationMaximizationLoss
from liteda.metrics import info_max_score
from liteda.runner import build_parser, main
from liteda.utils import UserError, run_cli

# every registered adaptation method (the engine's "source_only" and "kd" are regimes of their own)
ADAPT = [m for m in METHODS.names() if m not in ("source_only", "kd")]


def feats(n=6, d=5, seed=0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g) + shift).requires_grad_()


def grad_of(loss_fn, *xs):
    """Gradients of ``loss_fn(*xs)`` w.r.t. fresh leaf copies of ``xs``."""
    leaves = [x.detach().clone().requires_grad_() for x in xs]
    loss = loss_fn(*leaves)
    assert torch.isfinite(loss)
    loss.backward()
    return [x.grad for x in leaves]


# ----------------------------------------------------------------------------- gradient reversal
def test_grl_identity_forward_and_negated_scaled_backward():
    x = torch.randn(4, 3, requires_grad=True)
    y = GradientReverseLayer(0.3)(x)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, -0.3))


def test_warm_start_schedule_and_state():
    assert warm_start_coeff(0) == 0.0
    assert warm_start_coeff(1000) == pytest.approx(2 / (1 + math.exp(-1)) - 1)
    assert warm_start_coeff(10 ** 6, hi=0.1) == pytest.approx(0.1)
    grl = WarmStartGradientReverseLayer(alpha=1.0, lo=0.0, hi=1.0, max_iters=10, auto_step=True)
    for _ in range(3):
        grl(torch.zeros(1))
    assert int(grl.iter_num) == 3 and grl.coeff == pytest.approx(warm_start_coeff(3, max_iters=10))
    grl.eval()
    grl(torch.zeros(1))  # evaluation does not advance the ramp
    assert int(grl.iter_num) == 3 and "iter_num" in grl.state_dict()  # saved with the method: resume continues


def test_grl_horizon_follows_the_run_length_unless_given():
    import argparse
    assert grl_horizon(argparse.Namespace(grl_max_iters=0), 720) == 72  # DANN paper: 2/(1+exp(-10p))-1
    assert warm_start_coeff(360, max_iters=72) == pytest.approx(2 / (1 + math.exp(-5)) - 1)  # p=0.5
    assert grl_horizon(argparse.Namespace(grl_max_iters=1000), 720) == 1000  # tllib's fixed horizon
    with pytest.raises(UserError, match="--grl-max-iters"):
        grl_horizon(argparse.Namespace(grl_max_iters=-1), 720)


# ----------------------------------------------------------------------------- DANN
def test_dann_loss_value_gradient_sign_and_accuracy():
    torch.manual_seed(0)
    disc = DomainDiscriminator(5, 8)
    f_s, f_t = feats(6, seed=1), feats(6, seed=2, shift=1.0)
    rev = DomainAdversarialLoss(disc, grl=GradientReverseLayer(1.0))
    plain = DomainAdversarialLoss(disc, grl=nn.Identity())
    g_rev = grad_of(rev, f_s, f_t)
    g_plain = grad_of(plain, f_s, f_t)
    # The features move against the discriminator: exactly the negated gradient of its own loss.
    for a, b in zip(g_rev, g_plain):
        assert a.abs().sum() > 0 and torch.allclose(a, -b)
    assert 0.0 <= rev.domain_discriminator_accuracy <= 100.0


def test_dann_loss_is_log2_for_an_undecided_discriminator():
    disc = DomainDiscriminator(5, 8, batch_norm=False)
    nn.init.zeros_(disc[-2].weight), nn.init.zeros_(disc[-2].bias)  # last Linear before the Sigmoid -> logit 0
    loss = DomainAdversarialLoss(disc)(feats(), feats(seed=3))
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)


def test_dann_weighted_loss_matches_hand_bce():
    disc = DomainDiscriminator(5, 8, batch_norm=False, sigmoid=False).eval()
    f_s, f_t, w = feats(4), feats(4, seed=1), torch.tensor([0.5, 1.5, 1.0, 1.0])
    loss = DomainAdversarialLoss(disc, grl=nn.Identity())(f_s, f_t, w_s=w)
    p_s, p_t = torch.sigmoid(disc(f_s).squeeze(1)), torch.sigmoid(disc(f_t).squeeze(1))
    hand = 0.5 * (-(w * p_s.log()).mean() - (1 - p_t).log().mean())
    assert loss.item() == pytest.approx(hand.item(), rel=1e-5)


# ----------------------------------------------------------------------------- CDAN
def test_multilinear_maps():
    f, g = torch.randn(3, 4), torch.softmax(torch.randn(3, 2), 1)
    out = MultiLinearMap()(f, g)
    assert out.shape == (3, 8)
    assert torch.allclose(out[1].view(2, 4), torch.outer(g[1], f[1]))
    r = RandomizedMultiLinearMap(4, 2, 16)
    assert torch.allclose(r(f, g), (f @ r.Rf) * (g @ r.Rg) / 4.0)


def test_entropy_weights_favour_confident_samples():
    p = torch.tensor([[0.98, 0.01, 0.01], [1 / 3, 1 / 3, 1 / 3]])
    w = entropy_weights(p)
    assert w.mean().item() == pytest.approx(1.0) and w[0] > w[1]
    h = -(p * p.log()).sum(1)
    raw = 1 + torch.exp(-h)
    assert torch.allclose(w, raw / raw.mean())


@pytest.mark.parametrize("randomized,entropy", [(False, False), (False, True), (True, False)])
def test_cdan_loss_gradient_reaches_features_reversed(randomized, entropy):
    torch.manual_seed(0)
    disc = DomainDiscriminator(16 if randomized else 5 * 3, 8)
    mk = lambda grl: ConditionalDomainAdversarialLoss(disc, entropy, randomized, 3, 5, 16, grl=grl)  # noqa: E731
    rev, plain = mk(GradientReverseLayer(1.0)), mk(nn.Identity())
    if randomized:
        plain.map = rev.map  # the same random projection
    g_s, g_t = torch.randn(6, 3), torch.randn(6, 3)
    gr = grad_of(lambda a, b: rev(g_s, a, g_t, b), feats(6), feats(6, seed=1))
    gp = grad_of(lambda a, b: plain(g_s, a, g_t, b), feats(6), feats(6, seed=1))
    for a, b in zip(gr, gp):
        assert a.abs().sum() > 0 and torch.allclose(a, -b, atol=1e-7)


def test_cdan_predictions_are_a_condition_not_a_gradient_path():
    loss_fn = ConditionalDomainAdversarialLoss(DomainDiscriminator(15, 8))
    g_s = torch.randn(4, 3, requires_grad=True)
    loss_fn(g_s, feats(4), torch.randn(4, 3), feats(4, seed=1)).backward()
    assert g_s.grad is None


# ----------------------------------------------------------------------------- MDD
def test_mdd_value_by_hand():
    y_s = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    y_t = torch.tensor([[0.0, 0.0, 3.0], [1.0, 0.0, 0.0]])
    y_s_adv = torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.0, 1.0]])
    y_t_adv = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0]])
    ce = -(torch.log_softmax(y_s_adv, 1)[0, 0] + torch.log_softmax(y_s_adv, 1)[1, 1]) / 2
    p = torch.softmax(y_t_adv, 1)
    tgt = (torch.log(1 - p[0, 2]) + torch.log(1 - p[1, 0])) / 2
    mdd = ClassificationMarginDisparityDiscrepancy(margin=4.0)(y_s, y_s_adv, y_t, y_t_adv)
    assert mdd.item() == pytest.approx((-4.0 * ce + tgt).item(), rel=1e-5)


def test_mdd_method_head_descends_features_ascend():
    args = build_parser(get_method("mdd"), "adapt").parse_args(["root", "-s", "a", "-t", "b"])
    model = nn.Module()
    model.features_dim = 5
    method = get_method("mdd")(model, 3, args, 10).eval()  # no dropout: both passes see the same head
    method.grl = GradientReverseLayer(1.0)
    from liteda.adaptation.base import Step

    f_s, f_t = feats(4), feats(4, seed=1)
    step = Step(None, None, torch.randn(4, 3), f_s, None, torch.randn(4, 3), f_t)
    loss, stats = method(step)
    loss.backward()
    assert torch.isfinite(loss) and "mdd" in stats and f_s.grad.abs().sum() > 0
    # Without reversal the same loss gives the opposite feature gradient.
    method.grl = nn.Identity()
    f_s2, f_t2 = f_s.detach().clone().requires_grad_(), f_t.detach().clone().requires_grad_()
    method(Step(None, None, step.logits_s, f_s2, None, step.logits_t, f_t2))[0].backward()
    assert torch.allclose(f_s.grad, -f_s2.grad, atol=1e-6)


# ----------------------------------------------------------------------------- MMD (DAN, JAN)
def hand_mmd(xs, xt, k):
    ns, nt = len(xs), len(xt)
    ss = sum(k(xs[i], xs[j]) for i in range(ns) for j in range(ns) if i != j) / (ns * (ns - 1))
    tt = sum(k(xt[i], xt[j]) for i in range(nt) for j in range(nt) if i != j) / (nt * (nt - 1))
    st = sum(k(a, b) for a in xs for b in xt) / (ns * nt)
    return ss + tt - 2 * st


def gauss(sigma):
    return lambda a, b: math.exp(-float(((a - b) ** 2).sum()) / (2 * sigma ** 2))


def test_mmd_single_known_kernel_matches_hand_computation():
    xs, xt = torch.tensor([[0.0], [1.0], [2.0]]), torch.tensor([[0.5], [3.0], [4.0], [1.5]])
    mmd = MultipleKernelMaximumMeanDiscrepancy([GaussianKernel(sigma=1.0, track_running_stats=False)])
    assert mmd(xs, xt).item() == pytest.approx(hand_mmd(xs, xt, gauss(1.0)), rel=1e-5)


def test_linear_mmd_matches_hand_computation():
    xs, xt = torch.tensor([[0.0], [1.0], [2.0]]), torch.tensor([[0.5], [3.0], [4.0]])
    k = gauss(1.0)
    pairs = [(0, 1), (1, 2), (2, 0)]
    hand = sum(k(xs[i], xs[j]) + k(xt[i], xt[j]) - k(xs[i], xt[j]) - k(xs[j], xt[i]) for i, j in pairs) / 3
    mmd = MultipleKernelMaximumMeanDiscrepancy([GaussianKernel(sigma=1.0, track_running_stats=False)], linear=True)
    assert mmd(xs, xt).item() == pytest.approx(hand, rel=1e-5)


def test_gaussian_kernel_bandwidth_from_batch():
    x = torch.tensor([[0.0], [2.0]])
    k = GaussianKernel(alpha=0.5)(x)  # mean squared distance = (0 + 4 + 4 + 0) / 4 = 2 -> sigma^2 = 1
    assert k[0, 1].item() == pytest.approx(math.exp(-4 / 2))


def test_jmmd_is_mmd_under_the_product_kernel():
    xs, xt = feats(4, 3), feats(5, 3, seed=1, shift=0.5)
    ps, pt = torch.softmax(torch.randn(4, 2), 1), torch.softmax(torch.randn(5, 2), 1)
    jmmd = JointMultipleKernelMaximumMeanDiscrepancy(
        ([GaussianKernel(sigma=1.0, track_running_stats=False), GaussianKernel(sigma=2.0, track_running_stats=False)],
         [GaussianKernel(sigma=0.92, track_running_stats=False)]))
    k1 = lambda a, b: gauss(1.0)(a, b) + gauss(2.0)(a, b)  # noqa: E731
    joint = lambda a, b: k1(a[0], b[0]) * gauss(0.92)(a[1], b[1])  # noqa: E731
    hand = hand_mmd(list(zip(xs.detach(), ps)), list(zip(xt.detach(), pt)), joint)
    loss = jmmd((xs, ps), (xt, pt))
    assert loss.item() == pytest.approx(hand, rel=1e-5)
    loss.backward()
    assert xs.grad.abs().sum() > 0


def test_mkmmd_grows_with_shift_and_gradient_pulls_domains_together():
    mmd = MultipleKernelMaximumMeanDiscrepancy([GaussianKernel(alpha=2.0 ** k) for k in range(-3, 2)])
    xs, near, far = feats(32, 4), feats(32, 4, seed=1), feats(32, 4, seed=1, shift=3.0)
    assert mmd(xs, far).item() > mmd(xs, near).item()
    mmd(xs, far).backward()
    # Descending the loss moves source features towards the (shifted) target mean.
    assert (-xs.grad.mean(0)).sum() > 0


# ----------------------------------------------------------------------------- CORAL, MCC, IM
def test_coral_matches_paper_formula():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 3)), rng.normal(size=(5, 3)) * 2
    hand = ((np.cov(a, rowvar=False) - np.cov(b, rowvar=False)) ** 2).sum() / (4 * 3 * 3)
    fs, ft = torch.tensor(a, requires_grad=True), torch.tensor(b)
    loss = CorrelationAlignmentLoss()(fs, ft)
    assert loss.item() == pytest.approx(hand, rel=1e-6)
    loss.backward()
    assert fs.grad.abs().sum() > 0
    with_mean = CorrelationAlignmentLoss(with_mean=True)(fs, ft).item()
    assert with_mean == pytest.approx(hand + ((a.mean(0) - b.mean(0)) ** 2).sum() / 3, rel=1e-6)


def test_mcc_matches_loop_formula_and_tllib_normalisation():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.4, 0.0], [-1.0, 3.0, 0.0], [0.0, 0.0, 0.1]])
    t, (b, c) = 2.5, logits.shape
    p = torch.softmax(logits / t, 1)
    h = -(p * p.log()).sum(1)
    w = 1 + torch.exp(-h)
    w = b * w / w.sum()
    conf = torch.zeros(c, c)
    for i in range(b):
        conf += w[i] * torch.outer(p[i], p[i])
    row = conf / conf.sum(1, keepdim=True)
    hand = (row.sum() - row.trace()) / c
    col = conf / conf.sum(1)  # tllib's broadcast: equal because the confusion matrix is symmetric
    assert MinimumClassConfusionLoss(t)(logits).item() == pytest.approx(hand.item(), rel=1e-5)
    assert hand.item() == pytest.approx(((col.sum() - col.trace()) / c).item(), rel=1e-5)


def test_mcc_is_lower_for_confident_distinct_predictions():
    mcc = MinimumClassConfusionLoss()
    confident = torch.eye(3).repeat(2, 1) * 20
    assert mcc(confident).item() < 0.01 < mcc(torch.zeros(6, 3)).item()


def test_information_maximization_loss():
    im = InformationMaximizationLoss()
    assert im(torch.zeros(4, 3)).item() == pytest.approx(0.0, abs=1e-4)  # uniform: entropy = diversity = log 3
    collapsed = torch.tensor([[9.0, 0.0, 0.0]] * 4)
    spread = torch.eye(3).repeat(2, 1)[:4] * 9
    assert im(spread).item() < im(collapsed).item()  # diverse confident predictions are preferred
    logits = torch.randn(8, 3)
    assert im(logits).item() == pytest.approx(-info_max_score(logits)["im_score"], abs=1e-3)


def test_iwan_importance_weights_mean_one_and_favour_target_like_samples():
    disc = DomainDiscriminator(1, 4, batch_norm=False, sigmoid=False).eval()
    for layer in disc:
        if isinstance(layer, nn.Linear):
            nn.init.constant_(layer.weight, 1.0), nn.init.zeros_(layer.bias)
    f = torch.tensor([[-1.0], [0.5], [2.0]], requires_grad=True)  # larger -> "more source" for this D
    w = ImportanceWeightModule(disc).get_importance_weight(f)
    assert w.mean().item() == pytest.approx(1.0) and w[0] > w[1] > w[2] and not w.requires_grad


def test_iwan_entropy_weight_warms_up_with_the_reversal_unless_disabled():
    from liteda.adaptation.base import Step

    base = ["root", "-s", "a", "-t", "b", "--grl-max-iters", "5"]
    model = nn.Module()
    model.features_dim = 5
    f_s, f_t, logits_t = feats(4), feats(4, seed=1), torch.randn(4, 3)
    ramps = {}
    for warmup in ("grl", "none"):
        args = build_parser(get_method("iwan"), "adapt").parse_args(base + ["--entropy-warmup", warmup])
        torch.manual_seed(0)
        method = get_method("iwan")(model, 3, args, 50)
        ramps[warmup] = [method(Step(None, None, torch.randn(4, 3), f_s, None, logits_t, f_t))[1]["entropy_ramp"]
                         for _ in range(30)]
        assert method.config()["entropy_warmup"] == warmup
    assert ramps["none"] == [1.0] * 30
    assert ramps["grl"] == sorted(ramps["grl"]) and ramps["grl"][0] < 0.2 and ramps["grl"][-1] > 0.99
    assert ramps["grl"] == pytest.approx([warm_start_coeff(i + 1, max_iters=5) for i in range(30)])


# ----------------------------------------------------------------------------- registry and flags
def test_every_method_is_registered_and_declares_its_needs():
    for name in ADAPT:
        cls = get_method(name)
        assert cls.uses_target, name
    shot = get_method("shot_im")
    assert (shot.uses_source_labels, shot.frozen, shot.needs_source_model) == (False, ("head",), True)
    assert set(ADAPT) <= set(METHODS)


def test_cdan_flags_and_cdan_e_default():
    base = ["root", "-s", "a", "-t", "b"]
    a = build_parser(CDAN, "adapt").parse_args(base + ["--randomized", "--randomized-dim", "64"])
    assert a.randomized and a.randomized_dim == 64 and not a.entropy
    assert build_parser(get_method("cdan_e"), "adapt").parse_args(base).entropy
    assert build_parser(CDAN, "adapt").parse_args(base + ["-E"]).entropy


def test_non_default_trade_off_and_iwan_without_warmup_are_named_variants():
    """A run with another weighting must not overwrite (or be tabled as) the default run of its method."""
    base = ["root", "-s", "a", "-t", "b"]

    def name(method, extra):
        return get_method(method).variant_name(build_parser(get_method(method), "adapt").parse_args(base + extra), method)
    assert name("coral", []) == "coral" and name("coral", ["--trade-off", "10"]) == "coral_tradeoff10"
    assert name("cdan", ["-E", "--trade-off", "0.3"]) == "cdan_e_tradeoff0.3"
    assert name("iwan", []) == "iwan" and name("iwan", ["--entropy-warmup", "none"]) == "iwan_nowarmup"


def test_label_smoothing_smooths_the_source_loss_and_is_a_run_of_its_own(run_args, tmp_path, capsys):
    """--label-smoothing EPS: the source cross-entropy of every regime is smoothed (SDAT's smoother source loss),
    the run gets its own folder and row label, and a bad EPS is a one-line error."""
    from liteda.engine import StepLoss

    class Plain(nn.Module):
        def forward(self, x):
            return x, x

    method = get_method("source_only")(nn.Identity(), 3, build_parser(get_method("source_only"), "source_only")
                                       .parse_args(["root", "-s", "a", "-t", "b"]), 10)
    logits, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    _, cls_loss, *_ = StepLoss(Plain(), method, 1.0, label_smoothing=0.2)(logits, labels, None, None, 0, 10)
    assert torch.allclose(cls_loss, torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.2))
    assert not torch.allclose(cls_loss, torch.nn.functional.cross_entropy(logits, labels))
    argv = [a for a in run_args() if a not in ("--log", str(tmp_path / "run"))]
    res = main("mcc", "adapt", argv + ["--label-smoothing", "0.1"])
    assert res["method"] == "mcc_ls0.1"
    run = tmp_path / "runs" / "Custom" / "src2tgt" / "mcc_ls0.1" / "seed0"
    rec = json.loads((run / "record.json").read_text())
    assert rec["name"] == "mcc_ls0.1" and rec["label"].endswith("label smoothing 0.1")
    with pytest.raises(UserError, match="--label-smoothing must be in"):
        main("source_only", "source_only", argv + ["--label-smoothing", "1"])


def test_strong_source_views_reach_only_the_labeled_loader_and_are_a_run_of_their_own(run_args, tmp_path):
    """--source-aug strong: the labeled images get FixMatch's strong view (RandAugment + cutout), the unlabeled
    target keeps the training crops; the run gets its own folder, row label and resume settings."""
    from torchvision.transforms import v2 as T

    from liteda.runner import build_data, run_settings

    argv = [a for a in run_args() if a not in ("--log", str(tmp_path / "run"))] + ["--source-aug", "strong"]
    args = build_parser(get_method("mcc"), "adapt").parse_args(argv)
    data = build_data(args, "adapt", tmp_path / "probe", None, None)
    kinds = lambda loader: {type(t) for t in loader.dataset.transform.transforms}  # noqa: E731
    assert {T.RandAugment, T.RandomErasing} <= kinds(data.labeled)
    assert not {T.RandAugment, T.RandomErasing} & kinds(data.unlabeled)
    assert run_settings(args)["source_aug"] == "strong"
    assert "source_aug" not in run_settings(build_parser(get_method("mcc"), "adapt").parse_args(argv[:-2]))
    res = main("mcc", "adapt", argv)
    assert res["method"] == "mcc_srcstrong"
    rec = json.loads((tmp_path / "runs" / "Custom" / "src2tgt" / "mcc_srcstrong" / "seed0" / "record.json").read_text())
    assert rec["label"].endswith("strong source views")


def test_cdan_with_entropy_flag_is_logged_as_cdan_e(run_args, tmp_path):
    """cdan.py -E is CDAN+E: its own run folder and table row, never the CDAN run's."""
    argv = [a for a in run_args() if a not in ("--log", str(tmp_path / "run"))]
    res = main("cdan", "adapt", argv + ["-E"])
    assert res["method"] == "cdan_e" and res["method_config"]["entropy"]
    assert list((tmp_path / "runs" / "Custom").glob("*/*/seed0/results.json"))[0].parts[-3] == "cdan_e"
    assert main("cdan_e", "adapt", argv + ["--phase", "test"])["method"] == "cdan_e"


@pytest.mark.parametrize("method,flag", [("dann", "--randomized"), ("dan", "--margin"), ("mcc", "-E"),
                                         ("coral", "--temperature")])
def test_flag_of_another_method_is_a_one_line_error(method, flag, capsys):
    argv = ["root", "-s", "a", "-t", "b", flag]
    with pytest.raises(UserError, match="unrecognized arguments"):
        main(method, "adapt", argv)
    assert run_cli(lambda v: main(method, "adapt", v), argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and flag in err


def test_unknown_method_is_a_one_line_error():
    with pytest.raises(UserError, match="unknown method 'dannn'"):
        main("dannn", "adapt", ["root", "-s", "a", "-t", "b"])




# ----------------------------------------------------------------------------- tiny end-to-end runs
FAST = ["--resize-size", "18", "--crop-size", "16", "-b", "4"]  # after TINY: argparse keeps the last value


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One dataset, one decode cache and one source-only model for every method's run."""
    root = tmp_path_factory.mktemp("adapt")
    data = make_folder_dataset(root / "data")

    def args(log: str, *extra: str) -> list[str]:
        return [str(data), "-d", "Custom", "-s", "src", "-t", "tgt", *TINY, *FAST, "--epochs", "1", "-i", "2",
                "--cache-dir", str(root / "cache"), "--runs-root", str(root / "runs"), "--log", str(root / log),
                *extra]

    main("source_only", "source_only", args("source_only"))
    return root, args


@pytest.mark.parametrize("method,flags,message", [("mcc", ["-T", "0"], "--temperature must be positive"),
                                                  ("cdan", ["-r", "--randomized-dim", "0"], "--randomized-dim"),
                                                  ("mdd", ["--margin", "-1"], "--margin must be positive")])
def test_bad_knob_is_a_one_line_error(shared, method, flags, message):
    with pytest.raises(UserError, match=message):
        main(method, "adapt", shared[1]("bad", *flags))


@pytest.mark.parametrize("method", ADAPT)
def test_tiny_run_per_method(shared, method):
    root, args = shared
    extra = ["--source-ckpt", str(root / "source_only" / "model.pt")] if method == "shot_im" else []
    res = main(method, "adapt", args(method, *extra))
    saved = json.loads((root / method / "results.json").read_text())
    assert saved["method"] == method and saved["target_test"]["n"] == res["target_test"]["n"] > 0
    assert all(math.isfinite(v) for v in (saved["target_test"]["acc"], saved["target_test"]["loss"]))
    assert (root / method / "model.pt").is_file()
    if method == "shot_im":  # the source hypothesis (head) is frozen; the features moved
        src = torch.load(root / "source_only" / "model.pt", weights_only=True)["state_dict"]
        new = torch.load(root / method / "model.pt", weights_only=True)["state_dict"]
        assert torch.equal(src["head.weight"], new["head.weight"])
        assert not torch.equal(src["bottleneck.0.weight"], new["bottleneck.0.weight"])
        assert saved["init_from"].endswith("model.pt")
