"""What a careful user probes: exact resume, one writer per run, diverged runs, settings that define a run,
strict JSON, validation before anything is created."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from liteda.runner import main
from liteda.utils import UserError

TINY_NET = ["-a", "test_convnext", "--bottleneck-dim", "0"]


def weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def test_resume_inside_a_data_pass_equals_an_uninterrupted_run(run_args, tmp_path):
    """Two steps an epoch over passes of three batches: passes and epochs do not line up, yet the resumed run
    draws the same batches and augmentations as the uninterrupted one (bit-identical weights)."""
    flags = ["-i", "2", "-b", "5"]
    main("dann", "adapt", run_args(*flags, "--epochs", "3", log="whole"))
    main("dann", "adapt", run_args(*flags, "--epochs", "1", log="parts"))
    main("dann", "adapt", run_args(*flags, "--epochs", "3", "--resume", log="parts"))
    a, b = weights(tmp_path / "whole" / "model.pt"), weights(tmp_path / "parts" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    res = json.loads((tmp_path / "parts" / "results.json").read_text())
    assert res["resumed_from_epoch"] == 1 and res["epochs"] == 3
    assert json.loads((tmp_path / "whole" / "results.json").read_text())["resumed_from_epoch"] is None


@pytest.mark.parametrize("changed, setting", [(["-b", "4"], "batch_size"), (["--crop-size", "28"], "crop_size"),
                                              (["--bottleneck-dim", "32"], "bottleneck_dim"),
                                              (["--epochs", "1"], "--epochs 1 is fewer")])
def test_resume_refuses_settings_that_define_the_run(run_args, changed, setting):
    main("source_only", "source_only", run_args("--epochs", "2", "-i", "1"))
    with pytest.raises(UserError, match=setting):
        main("source_only", "source_only", run_args("--epochs", "2", "-i", "1", "--resume", *changed))


def test_a_diverged_run_fails_and_leaves_no_results(run_args, tmp_path):
    with pytest.raises(UserError, match="diverged|loss became"):
        main("source_only", "source_only", run_args("--lr", "1e6", "-i", "3"))
    assert not (tmp_path / "run" / "model.pt").exists() and not (tmp_path / "run" / "results.json").exists()


def test_results_json_is_strict(run_args, tmp_path):
    main("source_only", "source_only", run_args())
    text = (tmp_path / "run" / "results.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


@pytest.mark.parametrize("extra, msg", [(["--lr", "-0.1"], "--lr must be a positive"), (["--lr", "nan"], "--lr"),
                                        (["-i", "-1"], "-i/--iters-per-epoch"),
                                        (["--resize-size", "30"], "below --crop-size")])
def test_bad_numbers_are_refused_before_anything_is_created(run_args, tmp_path, extra, msg):
    with pytest.raises(UserError, match=msg):
        main("source_only", "source_only", run_args(*extra))
    assert not (tmp_path / "run").exists()


def test_a_mistyped_root_creates_nothing(run_args, tmp_path):
    argv = run_args()
    argv[0] = str(tmp_path / "no_such_root")
    with pytest.raises(UserError, match="does not exist"):
        main("source_only", "source_only", argv)
    assert not (tmp_path / "run").exists() and not (tmp_path / "no_such_root").exists()


def test_a_second_writer_of_one_run_folder_fails_fast(tmp_path):
    """A process holding a run folder's lock: a second command on the folder is refused, naming the holder."""
    from liteda.lock import lock_run
    from liteda.utils import UserError as UE

    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from liteda.lock import lock_run
        lock_run({str(tmp_path / 'run')!r}); print('locked', flush=True); time.sleep(60)""")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UE, match=f"in use by another LiteDA process \\(pid {holder.pid}\\)"):
            lock_run(tmp_path / "run")
    finally:
        holder.kill()
        holder.wait()
    lock_run(tmp_path / "run")  # released with its holder


def test_atomic_writes_leave_no_temporaries_and_normal_permissions(tmp_path):
    import os

    from liteda.utils import atomic_write_text

    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / f".a.txt.{gone.pid}.k3j2.tmp").write_text("left by a killed write")
    (tmp_path / ".a.txt.k3j2.tmp").write_text("left by a killed write without a pid in its name")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # another process writing the same file now (two stages, one shared split list): its temporary stays
        (tmp_path / f".a.txt.{live.pid}.x8q1.tmp").write_text("being written")
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        live.kill()
        live.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".a.txt.{live.pid}.x8q1.tmp", "a.txt"]
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_file_planted_in_the_weights_cache_cannot_run_code(tmp_path, monkeypatch):
    """ImageNet weights by name load through torch.hub with weights_only=True (and the published hash): a
    pickle planted under the cached file name is refused without being executed."""
    import os
    import pickle

    import torchvision.models as tvm

    from liteda.backbones import create_backbone

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = tvm.get_model_weights("mobilenet_v3_small").DEFAULT.url
    cached = tmp_path / "torch" / "hub" / "checkpoints" / os.path.basename(url)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(UserError, match="could not load torchvision weights"):
        create_backbone("mobilenet_v3_small", pretrained=True)
    assert not marker.exists()


def test_a_collapsed_adaptation_is_detected_and_reported(run_args, tmp_path, capsys):
    """A transfer loss that drives every target prediction to one class: the run finishes, but its results and
    its output say it collapsed (a label-free check), and the report lists it."""
    import torch.nn.functional as F

    from liteda.adaptation import METHODS, Method
    from liteda.report.cli import main as report

    class ToOneClass(Method):
        uses_target = True

        def forward(self, step):
            target = step.logits_t.new_zeros(len(step.logits_t), dtype=torch.long)
            return 20 * F.cross_entropy(step.logits_t, target), {}

    METHODS.register("to_one_class", ToOneClass)
    try:
        main("to_one_class", "adapt", run_args("-i", "12", "--runs-root", str(tmp_path / "runs"),
                                               log="runs/Custom/src2tgt/to_one_class/seed0"))
    finally:
        METHODS.unregister("to_one_class")
    res = json.loads((tmp_path / "runs" / "Custom" / "src2tgt" / "to_one_class" / "seed0" / "results.json").read_text())
    assert res["collapse"]["collapsed"] and res["collapse"]["classes_predicted"] == 1
    assert "the model collapsed" in capsys.readouterr().err
    main("source_only", "source_only", run_args("--runs-root", str(tmp_path / "runs"),
                                                log="runs/Custom/src2tgt/source_only/seed0"))
    report(["--runs", str(tmp_path / "runs"), "--dataset", "Custom", "--out", str(tmp_path / "results")])
    text = (tmp_path / "results" / "report.md").read_text()
    collapsed = text[text.index("## Collapsed models"):]
    assert "to_one_class, src2tgt seed 0: 100% of target predictions in one class" in collapsed
