"""Knowledge distillation: the losses by hand, frozen teachers, ensembles, re-normalisation, and a tiny end-to-end
run through the users' entry point (`liteda distill` from a finished teacher run)."""
from __future__ import annotations

import argparse
import copy
import json

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from liteda.adaptation import Step
from liteda.classifier import build_classifier, load_classifier, model_record
from liteda.distill import (ClassBalancedPseudoLabelLoss, Distill, DomainMixupLoss, FeatureDistillationLoss,
                             KnowledgeDistillationLoss, Renormalize, TeacherEnsemble, tta_views)
from liteda.distill.align import align_to_prior
from liteda.distill.refine import cluster_refined_labels
from liteda.runner import distill_main as run_kd
from liteda.datasets import IMAGENET_MEAN, IMAGENET_STD
from liteda.utils import UserError, atomic_torch_save, run_cli


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    # Two threads on a shared 2-core machine are many times slower than one for 32 px batches.
    monkeypatch.setenv("LITEDA_THREADS", "1")
    torch.set_num_threads(1)


def tiny_classifier(seed: int, arch: str = "mobilenet_v3_small") -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_classifier(arch, 3, pretrained=False, bottleneck_dim=16)


def kd_args(ckpts, **kw) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    Distill.add_args(p)
    args = p.parse_args([])
    args.teacher_ckpt = [str(c) for c in ckpts]
    for k, v in kw.items():
        setattr(args, k, v)
    return args


def save_teacher(model, path):
    atomic_torch_save(model_record(model, "mobilenet_v3_small", ["a", "b", "c"], 32, 16), path)
    return path


# ----------------------------------------------------------------------------- losses
def test_kd_loss_equals_hand_computed_kl_with_T_squared():
    torch.manual_seed(0)
    y_s, y_t, T = torch.randn(5, 4), torch.randn(5, 4) * 3, 4.0
    p_t, q_s = (y_t / T).softmax(1), (y_s / T).softmax(1)
    by_hand = (p_t * (p_t.log() - q_s.log())).sum(1).mean() * T * T
    assert torch.allclose(KnowledgeDistillationLoss(T)(y_s, y_t), by_hand, atol=1e-6)
    # one sample, two classes, written out: T=2, teacher logits (2, 0), student (0, 0)
    p = torch.tensor([2.0, 0.0]).div(2).softmax(0)
    expected = 4 * (p * (p / 0.5).log()).sum()
    assert torch.allclose(KnowledgeDistillationLoss(2.0)(torch.zeros(1, 2), torch.tensor([[2.0, 0.0]])), expected)
    assert KnowledgeDistillationLoss(4.0)(y_t, y_t).abs() < 1e-6


def test_feature_kd_is_scale_free_and_trains_its_projector():
    torch.manual_seed(0)
    loss = FeatureDistillationLoss(8, 5)
    f_s, f_t = torch.randn(4, 8), torch.randn(4, 5)
    assert torch.allclose(loss(f_s, f_t), loss(f_s, 10 * f_t), atol=1e-6)
    loss(f_s, f_t).backward()
    assert loss.projector.weight.grad is not None


def test_pseudo_labels_are_thresholded_and_class_balanced():
    pl = ClassBalancedPseudoLabelLoss(3, threshold=0.9, momentum=0.0)
    probs = torch.tensor([[0.95, 0.03, 0.02]] * 3 + [[0.02, 0.96, 0.02], [0.4, 0.3, 0.3]])
    loss, rate = pl(torch.zeros(5, 3, requires_grad=True), probs)
    assert rate == pytest.approx(0.8)  # the 0.4-confident sample is left out
    w = pl.class_weights()
    assert w[1] == pytest.approx(3 * w[0])  # class 0 is 3x as frequent among the confident labels
    assert loss.item() == pytest.approx(torch.log(torch.tensor(3.0)).item(), rel=1e-5)  # uniform student
    assert pl(torch.zeros(2, 3), torch.full((2, 3), 1 / 3))[1] == 0.0


# ----------------------------------------------------------------------------- teachers
def test_renormalisation_is_exact():
    raw = torch.rand(2, 3, 8, 8)
    mean_s, std_s = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x_s = (raw - mean_s) / std_s
    x_t = Renormalize(IMAGENET_MEAN, IMAGENET_STD, (0.5,) * 3, (0.5,) * 3)(x_s)
    assert torch.allclose(x_t, (raw - 0.5) / 0.5, atol=1e-6)
    same = Renormalize(IMAGENET_MEAN, IMAGENET_STD, IMAGENET_MEAN, IMAGENET_STD)
    assert same(x_s) is x_s


def test_ensemble_renormalises_for_each_teacher():
    teacher = tiny_classifier(1).eval()
    teacher.mean, teacher.std = (0.5,) * 3, (0.5,) * 3  # as timm's tf_efficientnet_lite0
    raw = torch.rand(2, 3, 32, 32)
    x_s = (raw - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        direct = teacher((raw - 0.5) / 0.5)
    assert torch.allclose(TeacherEnsemble([teacher])(x_s), direct - direct.logsumexp(1, keepdim=True), atol=1e-5)


def test_a_teacher_sees_the_students_crop_at_its_own_input_size(tmp_path):
    """A 24 px student taught by a 32 px teacher: the teacher scores the student's batch upsampled to 32 px,
    and a teacher loaded from its model.pt knows its size."""
    from liteda.distill.teachers import load_teacher

    teacher = tiny_classifier(1).eval()
    teacher.input_size = 32
    x = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        direct = teacher(torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False))
    assert torch.allclose(TeacherEnsemble([teacher])(x), direct - direct.logsumexp(1, keepdim=True), atol=1e-5)
    same = TeacherEnsemble([teacher])(torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear",
                                                                      align_corners=False))
    assert torch.allclose(same, direct - direct.logsumexp(1, keepdim=True), atol=1e-5)
    save_teacher(teacher, tmp_path / "model.pt")
    assert load_teacher(tmp_path / "model.pt")[0].input_size == 32


def test_ensemble_of_identical_teachers_equals_one_and_mixes_probabilities():
    a, b = tiny_classifier(1), tiny_classifier(2)
    x = torch.randn(4, 3, 32, 32)
    one, two = TeacherEnsemble([a]), TeacherEnsemble([a, copy.deepcopy(a)], weights=[1.0, 3.0])
    for T in (1.0, 4.0):
        assert torch.allclose((one(x, T) / T).softmax(1), (two(x, T) / T).softmax(1), atol=1e-6)
    with torch.no_grad():
        a.eval(), b.eval()
        mean_p = ((a(x) / 4).softmax(1) + (b(x) / 4).softmax(1)) / 2
    assert torch.allclose((TeacherEnsemble([a, b])(x, 4.0) / 4).softmax(1), mean_p, atol=1e-6)


def test_cluster_refinement_relabels_a_region_the_teacher_got_wrong():
    """Three tight feature clusters; the teacher calls a third of cluster 2 class 0 (less confidently): the
    centroids its probabilities weight still sit in the right clusters, so the refined labels are all right."""
    g = torch.Generator().manual_seed(0)
    centers = torch.eye(3, 8) * 5
    truth = torch.arange(3).repeat_interleave(30)
    feats = centers[truth] + 0.3 * torch.randn(90, 8, generator=g)
    probs = torch.nn.functional.one_hot(truth, 3).float() * 0.8 + 0.1
    wrong = torch.arange(60, 70)
    probs[wrong] = torch.tensor([0.6, 0.1, 0.3])
    refined = cluster_refined_labels(feats, probs)
    assert (probs.argmax(1) != truth).sum() == 10
    assert torch.equal(refined.labels, truth)
    assert abs(refined.changed - 10 / 90) < 1e-6 and refined.classes_kept == 3


def test_cluster_refinement_gives_no_image_to_a_class_without_mass():
    feats = torch.randn(20, 4, generator=torch.Generator().manual_seed(1))
    probs = torch.zeros(20, 3)
    probs[:, 0], probs[:10, 1] = 0.5, 0.5
    probs[10:, 0] = 1.0
    refined = cluster_refined_labels(feats, probs)
    assert set(refined.labels.tolist()) <= {0, 1} and refined.classes_kept <= 2
    with pytest.raises(ValueError, match="do not pair up"):
        cluster_refined_labels(feats[:5], probs)


def test_distribution_alignment_is_remixmatch_rule_and_moves_the_marginal_to_the_prior():
    """One teacher: softmax(z + shift) = p * prior / mean(p), renormalised; the over-predicted class loses the
    images the teacher was unsure of, a confident one keeps its label."""
    z = torch.tensor([[[4.0, 0.0, 0.0], [0.3, 0.0, 0.2], [0.2, 0.1, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]]])
    p = z[0].softmax(1)
    out = align_to_prior(z, p, torch.tensor([10, 10, 10]))
    expected = p * (torch.ones(3) / 3) / p.mean(0)
    assert torch.allclose(out.logits[0].softmax(1), expected / expected.sum(1, keepdim=True), atol=1e-5)
    assert out.shift[0] < 0 < out.shift[2]  # class 0 is over-predicted, class 2 under-predicted
    assert (out.mean_after - 1 / 3).abs().sum() < (out.mean_before - 1 / 3).abs().sum()
    labels = out.logits[0].argmax(1)
    assert labels.tolist() == [0, 2, 1, 1, 2]  # the confident ones keep their label, the two unsure ones move
    assert out.changed == pytest.approx(2 / 5)
    with pytest.raises(ValueError, match="pair up"):
        align_to_prior(z, p[:2], torch.ones(3))


def test_distribution_alignment_shifts_the_cached_labels_and_needs_the_cache(tmp_path):
    ckpt = save_teacher(tiny_classifier(1), tmp_path / "teacher.pt")
    student = tiny_classifier(2).train()
    images = torch.randn(12, 3, 32, 32)
    loader = DataLoader(TensorDataset(images, torch.arange(12)), batch_size=5)
    plain = Distill(student, 3, kd_args([ckpt], teacher_cache=True), total_iters=10)
    plain.prepare(lambda: loader)
    aligned = Distill(student, 3, kd_args([ckpt], teacher_cache=True, distribution_alignment=True), total_iters=10)
    aligned.prepare(lambda: loader, torch.tensor([5, 3, 4]))
    shift = aligned.aligned.shift
    assert torch.allclose(aligned.cached[0], plain.cached[0] + shift, atol=1e-5)
    assert aligned.config()["distribution_alignment"]["shift"] == pytest.approx(shift.tolist())
    assert "align=source" in aligned.resume_fields() and "align" not in plain.resume_fields()
    with pytest.raises(UserError, match="--distribution-alignment.*--teacher-cache"):
        Distill(student, 3, kd_args([ckpt], distribution_alignment=True), total_iters=10)


def test_cluster_weight_adds_a_loss_on_refined_teacher_labels(tmp_path):
    """--cluster-weight: prepare() labels the whole unlabeled set once through the teacher, and each step adds
    the student's cross-entropy on the refined labels of its batch's images (looked up by index)."""
    ckpt = save_teacher(tiny_classifier(1), tmp_path / "teacher.pt")
    student = tiny_classifier(2).train()
    method = Distill(student, 3, kd_args([ckpt], cluster_weight=0.5), total_iters=10)
    images = torch.randn(12, 3, 32, 32)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.arange(12)), batch_size=5)
    method.prepare(lambda: loader)
    assert method.refined is not None and method.refined.labels.shape == (12,)
    idx = torch.tensor([3, 7, 11, 0])
    logits, f = student(torch.cat([images[:4], images[idx]]))
    step = Step(images[:4], torch.tensor([0, 1, 2, 0]), logits[:4], f[:4], images[idx], logits[4:], f[4:], 0, 10,
                idx)
    loss, stats = method(step)
    expected = torch.nn.functional.cross_entropy(logits[4:].detach(), method.refined.labels[idx])
    assert abs(stats["cluster_loss"] - float(expected)) < 1e-5
    assert method.config()["cluster_weight"] == 0.5 and "cluster_changed" in method.config()
    with pytest.raises(UserError, match="--cluster-weight"):
        Distill(student, 3, kd_args([ckpt], cluster_weight=-1.0), total_iters=10)


def test_teachers_stay_frozen_and_gradients_reach_only_the_student(tmp_path):
    ckpt = save_teacher(tiny_classifier(1), tmp_path / "teacher.pt")
    student = tiny_classifier(2).train()
    method = Distill(student, 3, kd_args([ckpt], feat_kd_weight=1.0, pseudo_threshold=0.01,
                                         student_method="dann"), total_iters=10)
    method.train()
    assert not method.teacher.training and all(not t.training for t in method.teacher.teachers)
    x_s, x_t = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    logits, f = student(torch.cat([x_s, x_t]))
    step = Step(x_s, torch.tensor([0, 1, 2, 0]), logits[:4], f[:4], x_t, logits[4:], f[4:], 0, 10)
    loss, stats = method(step)
    loss.backward()
    assert {"kd_loss", "feat_kd_loss", "pseudo_loss", "teacher_agreement"} <= set(stats)
    assert all(p.grad is None and not p.requires_grad for p in method.teacher.parameters())
    assert student.head.weight.grad is not None and student.head.weight.grad.abs().sum() > 0
    assert method.feat_kd.projector.weight.grad is not None
    trained = {id(p) for g in method.get_parameters(0.01) for p in g["params"]}
    assert trained and not trained & {id(p) for p in method.teacher.parameters()}
    cfg = method.config()
    assert cfg["teachers"][0]["ckpt"] == str(ckpt) and cfg["teachers"][0]["arch"] == "mobilenet_v3_small"
    assert cfg["student_method"] == "dann"


# ----------------------------------------------------------------------------- pipeline
def test_cached_teacher_outputs_are_in_index_order_and_average_the_mirror():
    torch.manual_seed(0)
    teacher = TeacherEnsemble([tiny_classifier(1)])
    x = torch.randn(10, 3, 32, 32)
    order = torch.randperm(10)  # the loader may visit images in any order; rows follow the index
    loader = DataLoader(TensorDataset(x[order], order), batch_size=4)
    logits, feats = teacher.label_set(loader, features=True)
    z, f = teacher.outputs(x, features=True)
    z_m, f_m = teacher.outputs(torch.flip(x, dims=[3]), features=True)
    assert logits.shape == (1, 10, 3) and feats.shape == (10, f.shape[1])
    assert torch.allclose(logits, (z + z_m) / 2, atol=1e-5) and torch.allclose(feats, (f + f_m) / 2, atol=1e-5)


def test_ten_views_are_five_crops_and_their_mirrors_and_average_into_the_cache():
    x = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).view(2, 3, 16, 16)
    views = tta_views(x, 10)
    assert len(views) == 10 and all(v.shape == x.shape for v in views)
    top_left = torch.nn.functional.interpolate(x[..., :14, :14], size=(16, 16), mode="bilinear", align_corners=False)
    assert torch.equal(views[2], top_left) and torch.equal(views[3], torch.flip(top_left, dims=[3]))
    assert [torch.equal(a, b) for a, b in zip(tta_views(x, 2), (x, torch.flip(x, dims=[3])))] == [True, True]
    with pytest.raises(ValueError, match="one of"):
        tta_views(x, 3)
    torch.manual_seed(0)
    teacher = TeacherEnsemble([tiny_classifier(1)])
    images = torch.randn(6, 3, 32, 32)
    logits, _ = teacher.label_set(DataLoader(TensorDataset(images, torch.arange(6)), batch_size=4), views=10)
    expected = torch.stack([teacher.outputs(v)[0] for v in tta_views(images, 10)]).mean(0)
    assert torch.allclose(logits, expected, atol=1e-5)


def test_domain_mixup_loss_by_hand_and_in_the_distillation_step(tmp_path):
    """Each mixed image's target is lam * its source one-hot + (1 - lam) * the teacher's target probabilities;
    lam = 1 is plain source cross-entropy. In ``kd`` the loss runs the student once more, on the mixes."""
    torch.manual_seed(0)
    student = tiny_classifier(2).eval()
    x_s, x_t, y = torch.randn(3, 3, 32, 32), torch.randn(4, 3, 32, 32), torch.tensor([0, 2, 1])
    p_t = torch.softmax(torch.randn(4, 3), 1)
    loss = DomainMixupLoss(3, alpha=1.0)
    torch.manual_seed(1)
    got = loss(student, x_s, y, x_t, p_t)
    torch.manual_seed(1)
    lam = torch.distributions.Beta(1.0, 1.0).sample((3,))
    mixed = lam.view(-1, 1, 1, 1) * x_s + (1 - lam.view(-1, 1, 1, 1)) * x_t[:3]
    target = lam.view(-1, 1) * torch.nn.functional.one_hot(y, 3) + (1 - lam.view(-1, 1)) * p_t[:3]
    by_hand = -(target * torch.log_softmax(student(mixed), 1)).sum(1).mean()
    assert torch.allclose(got, by_hand, atol=1e-5)
    with pytest.raises(ValueError, match="alpha"):
        DomainMixupLoss(3, alpha=0)
    ckpt = save_teacher(tiny_classifier(1), tmp_path / "teacher.pt")
    student.train()
    method = Distill(student, 3, kd_args([ckpt], domain_mixup=0.5), total_iters=10)
    assert not {id(p) for p in method.parameters()} & {id(p) for p in student.parameters()}  # not registered twice
    logits, f = student(torch.cat([x_s, x_t]))
    total, stats = method(Step(x_s, y, logits[:3], f[:3], x_t, logits[3:], f[3:], 0, 10))
    assert stats["mixup_loss"] > 0
    total.backward()
    assert student.head.weight.grad is not None
    assert method.config()["domain_mixup"] == 0.5 and method.config()["mixup_alpha"] == 1.0
    args = kd_args([ckpt], domain_mixup=0.5, teacher_views=10, target_aug="strong")
    assert Distill.variant_name(args, "kd") == "kd_mixup0.5_views10_strongaug"
    with pytest.raises(UserError, match="--teacher-views"):
        Distill(student, 3, kd_args([ckpt], teacher_views=10), total_iters=10)  # views need the cache
    with pytest.raises(UserError, match="--domain-mixup"):
        Distill(student, 3, kd_args([ckpt], domain_mixup=-1.0), total_iters=10)


def agreement(model, teacher, loader) -> float:
    from liteda.metrics import predict

    (s, _), (t, _) = predict(model, loader), predict(teacher, loader)
    return float((s.argmax(1) == t.argmax(1)).float().mean() * 100)


# timm's tiny LayerNorm ConvNeXt: at 32 px a scratch MobileNetV3 predicts one class in eval mode after a few
# dozen steps (BatchNorm running statistics), which would make any agreement test trivial.
TINY_NET = ["-a", "test_convnext", "--bottleneck-dim", "0"]


@pytest.mark.parametrize("cache", [[], ["--teacher-cache"]], ids=["online", "cached"])
def test_tiny_distillation_moves_the_student_toward_the_teacher(run_args, tmp_path, capsys, cache):
    """The teacher is deliberately wrong (its classes rolled by one), so that only the KD term, not the source
    cross-entropy, can bring the student's target predictions to it: the distilled student must agree with it
    more than the initial student and more than the same run with --kd-weight 0 (online teacher, or its
    outputs cached once per target image)."""
    from liteda.runner import build_data, build_model, build_parser, main
    from liteda.utils import seed_everything

    main("source_only", "source_only", run_args("-i", "30", *TINY_NET, log="teacher"))
    teacher, rec = load_classifier(tmp_path / "teacher" / "model.pt")
    with torch.no_grad():
        for p in (teacher.head.weight, teacher.head.bias):
            p.copy_(p.roll(1, 0))
    ckpt = tmp_path / "rolled.pt"
    atomic_torch_save(model_record(teacher, rec["arch"], rec["classes"], 32, 0), ckpt)

    def distilled(weight: str, log: str) -> tuple[list[str], torch.nn.Module]:
        argv = run_args("-i", "30", *TINY_NET, "--teacher-ckpt", str(ckpt), "--kd-weight", weight, *cache, log=log)
        run_kd(argv)
        return argv, load_classifier(tmp_path / log / "model.pt")[0]

    argv, student = distilled("4", "kd")
    _, control = distilled("0", "control")
    saved = json.loads((tmp_path / "kd" / "results.json").read_text())["method_config"]
    assert saved["teachers"][0]["ckpt"] == str(ckpt) and saved["teachers"][0]["arch"] == "test_convnext"
    assert saved["teacher_cache"] is bool(cache)

    args = build_parser(Distill, "adapt").parse_args(argv)
    seed_everything(args.seed)  # the initial student, built as the runner builds it
    build_model(args, 2)
    initial = build_model(args, 3)
    loader = build_data(args, "adapt", tmp_path / "kd", student.mean, student.std).target_all()
    before, after, without = (agreement(m, teacher, loader) for m in (initial, student, control))
    with capsys.disabled():
        print(f"\nagreement with the teacher on target images: initial {before:.1f}%, "
              f"kd {after:.1f}%, kd-weight 0 {without:.1f}%")
    assert after > before and after > without and after >= 60, (before, after, without)


def test_teacher_run_is_read_through_its_record_and_becomes_the_parent(run_args, tmp_path):
    """`liteda distill --teacher-run DIR`: the teacher's model comes from its stage record; the student's record
    names the teacher run as its parent and the run JSON carries the teacher's own accuracy."""
    from liteda.record import read_record
    from liteda.runner import main

    main("dann", "adapt", run_args(*TINY_NET, log="teacher"))
    teacher = tmp_path / "teacher"
    run_kd(run_args(*TINY_NET, "--teacher-run", str(teacher), log="student"))
    rec = read_record(tmp_path / "student")
    assert rec.kind == "distill" and rec.label == "distilled student (test_convnext)"
    assert rec.parent(tmp_path / "student", "teacher").resolve() == teacher.resolve()
    info = json.loads((tmp_path / "student" / "results.json").read_text())["method_config"]["teachers"][0]
    teacher_results = json.loads((teacher / "results.json").read_text())
    assert info["ckpt"] == str(teacher / "model.pt") and info["method"] == "dann-test_convnext"
    assert info["target_test_acc"] == teacher_results["target_test"]["acc"]


@pytest.mark.parametrize("extra, needle", [
    (["--teacher-ckpt", "missing/model.pt"], "--teacher-ckpt"),
    (["--teacher-run", "missing"], "not a finished LiteDA run folder"),
    ([], "distill needs a teacher"),
])
def test_bad_teacher_input_is_one_line(run_args, capsys, extra, needle):
    assert run_cli(run_kd, run_args(*extra)) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_teacher_weights_must_match_the_teachers(run_args, tmp_path, capsys):
    from liteda.runner import main

    main("source_only", "source_only", run_args("-i", "1", *TINY_NET, log="teacher"))
    ckpt = str(tmp_path / "teacher" / "model.pt")
    assert run_cli(run_kd, run_args(*TINY_NET, "--teacher-ckpt", ckpt, "--teacher-weights", "1", "2")) == 2
    assert "--teacher-weights" in capsys.readouterr().err


def test_resume_refuses_a_kd_checkpoint_made_with_other_distillation_settings(run_args, tmp_path, capsys):
    """Online and cached teacher outputs are two recipes: a run must not switch between them half-way."""
    from liteda.runner import main

    main("source_only", "source_only", run_args("-i", "2", *TINY_NET, log="teacher"))
    kd = run_args("-i", "2", *TINY_NET, "--teacher-ckpt", str(tmp_path / "teacher" / "model.pt"), log="kd")
    run_kd(kd)
    assert run_cli(run_kd, kd + ["--epochs", "2", "--resume", "--teacher-cache"]) == 2
    err = capsys.readouterr().err.strip()
    assert "was made with" in err and "cache=0" in err and len(err.splitlines()) == 1
    run_kd(kd + ["--epochs", "2", "--resume"])  # the same settings resume
    assert json.loads((tmp_path / "kd" / "results.json").read_text())["epochs"] == 2


def test_teacher_ensemble_benchmark_scores_each_teacher_and_their_mix(run_args, tmp_path):
    """benchmarks/teacher_ensemble.py on a kd run with the same teacher given twice: each teacher scores what its
    own run recorded, and the ensemble of two identical teachers scores the same."""
    import importlib.util
    from pathlib import Path

    from liteda.runner import main

    main("source_only", "source_only", run_args("-i", "3", *TINY_NET, log="teacher"))
    ckpt = str(tmp_path / "teacher" / "model.pt")
    run_kd(run_args(*TINY_NET, "-i", "1", "--teacher-ckpt", ckpt, "--teacher-ckpt", ckpt, log="kd2"))
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "teacher_ensemble.py"
    spec = importlib.util.spec_from_file_location("teacher_ensemble", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    row = mod.score_run(tmp_path / "kd2")
    recorded = json.loads((tmp_path / "teacher" / "results.json").read_text())["target_test"]["acc"]
    assert [t["acc"] for t in row["teachers"]] == pytest.approx([recorded, recorded])
    assert row["ensemble"] == pytest.approx(recorded) and row["weights"] == pytest.approx([0.5, 0.5])
    assert "| Avg |" in mod.markdown([row], "cmd")


def test_strong_target_view_reaches_only_the_unlabeled_loader(run_args, tmp_path):
    """--target-aug strong: the student sees FixMatch's strong view (RandAugment + cutout) of the unlabeled target
    images only (the labeled source keeps the training crops); the run is its own variant and records the view."""
    from torchvision.transforms import v2 as T

    from liteda.datasets import build_transform
    from liteda.runner import build_data, build_parser, main

    main("source_only", "source_only", run_args(*TINY_NET, log="teacher"))
    argv = run_args(*TINY_NET, "--teacher-run", str(tmp_path / "teacher"), "--teacher-cache", "--target-aug",
                    "strong", log="kd")
    run_kd(argv)
    assert json.loads((tmp_path / "kd" / "results.json").read_text())["method_config"]["target_aug"] == "strong"
    args = build_parser(Distill, "adapt").parse_args(argv)
    assert Distill.variant_name(args, "kd") == "kd_strongaug"
    # a loss on the student is another student too, not a rerun of kd_strongaug
    assert Distill.variant_name(build_parser(Distill, "adapt").parse_args([*argv, "--student-method", "mcc"]),
                                "kd") == "kd_mcc_strongaug"
    data = build_data(args, "adapt", tmp_path / "kd", None, None)
    kinds = lambda loader: {type(t) for t in loader.dataset.transform.transforms}  # noqa: E731
    assert {T.RandAugment, T.RandomErasing} <= kinds(data.unlabeled)
    assert not {T.RandAugment, T.RandomErasing} & kinds(data.labeled)
    torch.manual_seed(0)
    view = build_transform(True, 32, strong=True)(torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8))
    assert view.shape == (3, 32, 32) and (view == 0).all(0).any()  # the cutout: a patch zero in every channel


def test_teacher_views_domain_mixup_and_alignment_run_end_to_end_as_their_own_variant(run_args, tmp_path):
    from liteda.runner import build_parser, main

    main("source_only", "source_only", run_args(*TINY_NET, log="teacher"))
    argv = run_args(*TINY_NET, "--teacher-run", str(tmp_path / "teacher"), "--teacher-cache", "--teacher-views", "10",
                    "--domain-mixup", "0.3", "--distribution-alignment", log="kd")
    run_kd(argv)
    res = json.loads((tmp_path / "kd" / "results.json").read_text())
    assert res["method_config"]["teacher_views"] == 10 and res["method_config"]["domain_mixup"] == 0.3
    aligned = res["method_config"]["distribution_alignment"]  # the source's class counts reached the method
    assert len(aligned["shift"]) == len(res["classes"]) and 0 <= aligned["changed"] <= 1
    assert Distill.variant_name(build_parser(Distill, "adapt").parse_args(argv), "kd") == "kd_mixup0.3_views10_distalign"
    assert "mixup_loss" in (tmp_path / "kd" / "history.csv").read_text().splitlines()[0]
