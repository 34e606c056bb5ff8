
import pytest
import torch

from liteda.engine import iterations_per_epoch, lr_lambda
from liteda.runner import main
from liteda.utils import UserError


def test_lr_schedule_is_tllibs_inverse_decay():
    f = lr_lambda(0.001, 0.75)
    assert f(0) == 1.0
    assert f(1000) == pytest.approx(2 ** -0.75)


def test_iterations_per_epoch_follows_protocol():
    assert iterations_per_epoch(766, 236, 32) == 24
    assert iterations_per_epoch(10, 100, 32) == 4


def test_resume_continues_from_last_finished_epoch(run_args, tmp_path):
    main("source_only", "source_only", run_args("--epochs", "1"))
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == 0
    res = main("source_only", "source_only", run_args("--epochs", "2", "--resume"))
    rows = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[1].startswith("1,") and rows[2].startswith("2,")  # epoch 1 not redone
    assert res["epochs"] == 2


def test_oracle_trains_on_target_with_same_iterations(run_args, tmp_path):
    src = main("source_only", "source_only", run_args("-i", "3", log="s"))
    orc = main("source_only", "oracle", run_args("-i", "3", log="o"))
    assert orc["regime"] == "oracle" and orc["method"] == "oracle" and src["method"] == "source_only"
    assert orc["config"]["iters_per_epoch"] == src["config"]["iters_per_epoch"] == 3


def test_unlabeled_target_labels_are_hidden(run_args, tmp_path):
    from liteda.runner import Data, build_parser, prepare_domains
    from liteda.adaptation import get_method

    args = build_parser(get_method("source_only"), "adapt").parse_args(run_args())
    splits = prepare_domains("Custom", args.root, ["src", "tgt"], tmp_path / "sp")
    data = Data(args, splits, None, None, "adapt")
    assert set(data.unlabeled.dataset.labels.tolist()) == {-1}
    _, second = data.unlabeled.dataset[3]  # an unlabeled item carries its index, not its label
    assert second == 3


@pytest.mark.parametrize("extra,msg", [
    (["--pretrained", "/nonexistent.pth"], "does not exist"),
    (["-a", "no_such_arch_xyz"], "unknown arch"),
    (["--freeze-stages", "99"], "freeze"),
    (["--bogus-flag"], "unrecognized arguments"),
])
def test_bad_input_is_one_line_user_error(run_args, extra, msg):
    with pytest.raises(UserError, match=msg):
        main("source_only", "source_only", run_args(*extra))


def test_cli_exit_code_and_single_line(tmp_path):
    import subprocess, sys  # noqa: E401

    r = subprocess.run([sys.executable, "-m", "liteda", "train", str(tmp_path / "nowhere"), "-d", "OfficeCaltech",
                        "-s", "A", "-t", "W", "--scratch"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "does not exist" in r.stderr


def test_device_flag_resolves_and_rejects_what_cannot_run():
    from liteda.utils import resolve_device

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UserError, match="--device 'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            resolve_device("cuda:0")
        with pytest.raises(UserError, match="--amp fp16 needs a CUDA GPU"):
            resolve_device("auto", "fp16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_the_gpu_with_fp16_amp_writes_a_cpu_loadable_model(run_args, tmp_path):
    main("dann", "adapt", run_args("--device", "cuda", "--amp", "fp16"))
    rec = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert all(v.device.type == "cpu" for v in rec["state_dict"].values())


def test_select_im_keeps_the_epoch_with_the_best_label_free_score(run_args, tmp_path):
    """--select im: every epoch logs the IM score of the unlabeled target-train predictions, the run keeps the
    weights of the epoch where it was highest (not the last one's when they differ), records that epoch, and is a
    run of its own (<name>_imsel); the default keeps the last epoch."""
    import csv

    from liteda.classifier import load_classifier

    argv = [a for a in run_args("--epochs", "3") if a not in ("--log", str(tmp_path / "run"))]
    res = main("mcc", "adapt", argv + ["--select", "im"])
    assert res["method"] == "mcc_imsel"
    run = tmp_path / "runs" / "Custom" / "src2tgt" / "mcc_imsel" / "seed0"
    rows = list(csv.DictReader((run / "history.csv").open()))
    scores = [float(r["target_train_im_score"]) for r in rows]
    best = max(range(len(scores)), key=lambda i: scores[i]) + 1
    assert res["selected_epoch"] == best and res["config"]["select"] == "im"
    model, _ = load_classifier(run / "model.pt")
    selected = torch.load(run / "selected.pt", weights_only=True)
    assert all(torch.equal(v, selected[k]) for k, v in model.state_dict().items())
    last = main("mcc", "adapt", argv)
    assert last["method"] == "mcc" and last["selected_epoch"] == 3
    assert "target_train_im_score" not in (tmp_path / "runs" / "Custom" / "src2tgt" / "mcc" / "seed0" /
                                           "history.csv").read_text()


def test_select_holdout_scores_im_on_images_the_run_does_not_train_on(run_args, tmp_path):
    """--select im --select-holdout FRAC: that share of unlabeled target-train leaves the training loader and is
    what the IM score is read on; the run is its own (<name>_imsel_ho<FRAC>), and without --select im the flag is
    a one-line error."""
    from liteda.adaptation import get_method
    from liteda.runner import build_data, build_parser

    argv = [a for a in run_args("--epochs", "2") if a not in ("--log", str(tmp_path / "run"))]
    args = build_parser(get_method("mcc"), "adapt").parse_args(argv + ["--select", "im", "--select-holdout", "0.25"])
    data = build_data(args, "adapt", tmp_path / "probe", None, None)
    held, trained = len(data.select_eval().dataset), len(data.unlabeled.dataset)
    assert held == data.n_select_holdout == round(0.25 * data.n_target) and held + trained == data.n_target
    assert len(data.unlabeled_eval().dataset) == trained  # what a method caches is what it trains on
    res = main("mcc", "adapt", argv + ["--select", "im", "--select-holdout", "0.25"])
    assert res["method"] == "mcc_imsel_ho0.25" and res["n_select_holdout"] == held
    assert 1 <= res["selected_epoch"] <= 2
    with pytest.raises(UserError, match="--select-holdout 0.25 needs --select im"):
        main("mcc", "adapt", argv + ["--select-holdout", "0.25"])


def test_self_training_loss_labels_the_strong_view_with_confident_weak_predictions():
    """FixMatch's term: a weak-view prediction at or above the threshold is the strong view's hard label; the rest
    add nothing, the mean is over the whole batch, and no gradient flows into the weak view."""
    import torch.nn.functional as F

    from liteda.adaptation.self_training import ConfidenceBasedSelfTrainingLoss

    weak = torch.tensor([[10.0, 0.0, 0.0], [0.2, 0.1, 0.0]], requires_grad=True)  # confident, unsure
    strong = torch.tensor([[0.0, 3.0, 0.0], [0.0, 0.0, 5.0]], requires_grad=True)
    loss, mask, labels = ConfidenceBasedSelfTrainingLoss(0.95)(strong, weak)
    assert mask.tolist() == [1.0, 0.0] and labels.tolist() == [0, 0]
    assert loss.item() == pytest.approx(F.cross_entropy(strong[:1], torch.tensor([0])).item() / 2)
    loss.backward()
    assert weak.grad is None and strong.grad[1].abs().sum() == 0


def test_self_training_trains_on_two_views_of_each_unlabeled_image(run_args, tmp_path):
    """--self-training W: the unlabeled loader yields (weak, strong) views, the epoch logs the self-training loss
    and the share of pseudo-labelled images, the run is its own (<name>_st<W>) and records the setting; a method
    without target data, or a bad weight, is a one-line error."""
    import csv

    from liteda.adaptation import get_method
    from liteda.runner import build_data, build_parser

    argv = [a for a in run_args("--epochs", "1") if a not in ("--log", str(tmp_path / "run"))]
    args = build_parser(get_method("mcc"), "adapt").parse_args(argv + ["--self-training", "1"])
    data = build_data(args, "adapt", tmp_path / "probe", None, None)
    (weak, strong), _ = data.unlabeled.dataset[0]
    assert weak.shape == strong.shape and not torch.equal(weak, strong)
    res = main("mcc", "adapt", argv + ["--self-training", "1", "--self-training-threshold", "0.5"])
    assert res["method"] == "mcc_st1t0.5" and res["config"]["self_training"] == 1.0
    rows = list(csv.DictReader((tmp_path / "runs" / "Custom" / "src2tgt" / "mcc_st1t0.5" / "seed0" /
                                "history.csv").open()))
    assert 0 <= float(rows[0]["pseudo_label_share"]) <= 1 and float(rows[0]["self_training_loss"]) >= 0
    with pytest.raises(UserError, match="--self-training needs unlabeled target images"):
        main("source_only", "source_only", argv + ["--self-training", "1"])
    with pytest.raises(UserError, match="--self-training must be a non-negative"):
        main("mcc", "adapt", argv + ["--self-training", "-1"])
