"""Deployment: ONNX export round trip, FP16/INT8 agreement, every registered artifact, the benchmark's keys and
reports, the stage records it reads and writes, TensorRT guards (and its wiring, mocked), OpenVINO IR and NNCF
INT8, the compiled PyTorch path, the label-free recommendation, the CPU's instruction sets, bad input."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_folder_dataset
from liteda.classifier import build_classifier
from liteda.deploy import ARTIFACTS, LoadedArtifact
from liteda.deploy.bench import benchmark_artifact
from liteda.deploy.cli import bench_main, build_parser, export_main
from liteda.deploy.export import export_artifacts, make_context
from liteda.deploy.onnx import compact_onnx, export_onnx, onnx_logits, read_metadata
from liteda.deploy.ort import (convert_fp16, excluded_nodes, make_session, name_unnamed_nodes, quantize_int8,
                                 quantize_weights_int8)
from liteda.deploy.runtimes.ort import ort_runner
from liteda.deploy.tensorrt import trt_unavailable_reason
from liteda.record import DatasetRef, StageRecord, Transform, read_record, write_record
from liteda.utils import run_cli

SIZE = 32
ROOT = Path(__file__).resolve().parents[1]
SLOW = bool(os.environ.get("LITEDA_SLOW_TESTS"))
SLOW_REASON = "compiles for 1-2 min on a 2-core CPU; runs with LITEDA_SLOW_TESTS=1"
HAVE_OPENVINO = importlib.util.find_spec("openvino") is not None
HAVE_NNCF = HAVE_OPENVINO and importlib.util.find_spec("nncf") is not None
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return torch.rand(32, 3, SIZE, SIZE, generator=g) * 4 - 2


@pytest.fixture(scope="module")
def tiny_model(images):
    """Random weights with BatchNorm statistics estimated on the images: an untrained MBV3 otherwise predicts
    one class for every input, and agreement between runtimes would be trivially 100%."""
    torch.manual_seed(0)
    model = build_classifier("mobilenet_v3_small", 3, pretrained=False)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # cumulative average over the batch below
    with torch.no_grad():
        model.train()(images)
    return model.eval()


@pytest.fixture(scope="module")
def onnx_fp32(tiny_model, images, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "model_fp32.onnx"
    info = export_onnx(tiny_model, path, SIZE, meta={"classes": ["a", "b", "c"], "mean": [0.5] * 3, "std": [0.25] * 3},
                       check_images=images[:8])
    return path, info


def test_export_round_trip_matches_pytorch(tiny_model, images, onnx_fp32):
    path, info = onnx_fp32
    assert info["max_abs_diff_vs_torch"] < 1e-3 and info["opset"] == 17
    with torch.no_grad():
        ref = tiny_model(images).numpy()
    out = onnx_logits(path, images.numpy())  # batch 24 through a file exported at batch 1: dynamic batch works
    np.testing.assert_allclose(out, ref, atol=1e-3, rtol=1e-3)
    meta = read_metadata(path)
    assert meta["classes"] == ["a", "b", "c"] and meta["crop_size"] == SIZE and meta["precision"] == "fp32"
    sess = make_session(path, threads=1)
    assert sess.get_inputs()[0].name == "input" and sess.get_inputs()[0].shape[1:] == [3, SIZE, SIZE]


def test_fp16_and_int8_agree_with_fp32(onnx_fp32, images, tmp_path):
    path, _ = onnx_fp32
    ref = onnx_logits(path, images.numpy()).argmax(1)
    fp16 = convert_fp16(path, tmp_path / "fp16.onnx")
    recipe = quantize_int8(path, tmp_path / "int8.onnx", images[:16].numpy(), method="minmax")
    assert recipe["per_channel"] and recipe["calib_images"] == 16
    assert len(set(ref.tolist())) > 1  # the reference predicts several classes
    for p, need in ((fp16, 95.0), (tmp_path / "int8.onnx", 70.0)):
        out = onnx_logits(p, images.numpy())
        assert out.dtype == np.float32 and np.isfinite(out).all()
        agree = (out.argmax(1) == ref).mean() * 100
        assert agree >= need, (p, agree)
    assert read_metadata(tmp_path / "int8.onnx")["precision"] == "int8"
    assert (tmp_path / "int8.onnx").stat().st_size < path.stat().st_size / 2


def test_compaction_keeps_outputs_and_shrinks_an_int8_file(onnx_fp32, images, tmp_path):
    import onnx

    src, dst = tmp_path / "q.onnx", tmp_path / "q_compact.onnx"
    quantize_int8(onnx_fp32[0], src, images[:8].numpy())
    dst.write_bytes(src.read_bytes())
    size = compact_onnx(dst)
    assert size["mb_after"] < size["mb_before"] == os.path.getsize(src) / 1e6
    np.testing.assert_array_equal(onnx_logits(dst, images.numpy()), onnx_logits(src, images.numpy()))
    proto = onnx.load(str(dst))
    assert {o.domain for o in proto.opset_import} <= {"", "ai.onnx"}  # portable: no ORT-only op or domain
    assert sum(n.op_type == "DequantizeLinear" for n in proto.graph.node) > 0  # still INT8 weights, not folded
    assert read_metadata(dst)["compacted_from_mb"] == round(size["mb_before"], 6)
    assert read_metadata(dst)["classes"] == ["a", "b", "c"]
    again = compact_onnx(dst)  # nothing left to fold: the file stays as it is (up to the metadata line)
    assert abs(again["mb_after"] - size["mb_after"]) < 1e-3
    np.testing.assert_array_equal(onnx_logits(dst, images.numpy()), onnx_logits(src, images.numpy()))


def test_histogram_calibration_with_an_uneven_image_count(onnx_fp32, images, tmp_path):
    # 18 images in batches of 16 would leave a batch of 2, which ORT's histogram collectors cannot stack
    recipe = quantize_int8(onnx_fp32[0], tmp_path / "p.onnx", images[:18].numpy(), method="percentile")
    assert recipe["calib_images"] == 18 and np.isfinite(onnx_logits(tmp_path / "p.onnx", images.numpy())).all()


def test_weight_only_int8_keeps_outputs_and_shrinks_file(onnx_fp32, images, tmp_path):
    path, _ = onnx_fp32
    dst = tmp_path / "int8w.onnx"
    recipe = quantize_weights_int8(path, dst)
    assert recipe["quantized_tensors"] > 10 and read_metadata(dst)["precision"] == "int8w"
    assert read_metadata(dst)["classes"] == ["a", "b", "c"]  # deployment metadata carried over
    assert dst.stat().st_size < path.stat().st_size / 3
    sess = make_session(dst, threads=1)  # dequantizes once at load: QDQ fusion is switched off for this file
    assert sess.get_session_options().get_session_config_entry("session.disable_quant_qdq") == "1"
    ref, out = onnx_logits(path, images.numpy()), onnx_logits(dst, images.numpy())
    # weights rounded to 8 bits, activations untouched: closer to FP32 than static INT8 on the same inputs
    quantize_int8(path, tmp_path / "int8.onnx", images[:16].numpy())
    static = onnx_logits(tmp_path / "int8.onnx", images.numpy())
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.9
    assert np.abs(out - ref).mean() < np.abs(static - ref).mean()


def test_int8_exclude_groups_name_mobilenet_parts(onnx_fp32, images, tmp_path):
    from onnxruntime.quantization import quant_pre_process

    path, _ = onnx_fp32
    pre = tmp_path / "pre.onnx"
    quant_pre_process(str(path), str(pre))
    name_unnamed_nodes(pre)  # the HardSwish that pre-processing decomposes comes out nameless
    assert len(excluded_nodes(pre, ["stem"])) == 1
    assert len(excluded_nodes(pre, ["depthwise"])) == 11  # one per inverted-residual block of MBV3-Small
    assert len(excluded_nodes(pre, ["gates"])) == 2 * 9  # 9 SE blocks: the Mul and its HardSigmoid
    hs = excluded_nodes(pre, ["hardswish"])
    assert hs and not set(hs) & set(excluded_nodes(pre, ["gates"]))
    recipe = quantize_int8(path, tmp_path / "int8.onnx", images[:8].numpy(), exclude=["gates", "head"])
    assert recipe["excluded_nodes"] == 18 + len(excluded_nodes(pre, ["head"])) and recipe["exclude"] == ["gates", "head"]
    with pytest.raises(Exception, match="--int8-exclude"):
        excluded_nodes(pre, ["nope"])


def test_benchmark_artifact_keys(onnx_fp32, images):
    path, _ = onnx_fp32
    labels = np.zeros(len(images), dtype=np.int64)
    row = benchmark_artifact(ort_runner(str(path), "fp32", threads=1), images.numpy(), labels, iters=5, warmup=1)
    for k in ("p50_ms", "p90_ms", "p99_ms", "bs32_img_s", "size_mb", "acc", "threads", "providers"):
        assert row[k] is not None, k
    assert row["p50_ms"] <= row["p99_ms"] and 0 <= row["acc"] <= 100
    skipped = benchmark_artifact(LoadedArtifact("x", "torch", "bf16", None, note="skipped"), images.numpy(), labels)
    assert skipped["note"] == "skipped" and "p50_ms" not in skipped


# ----------------------------------------------------------------------------- run folders with a stage record
def ensure_record(run, root, data="Custom", source="src", target="tgt", kind="source_only") -> None:
    """The record a training stage writes into its run folder, written here only when the run has none."""
    if (run / "record.json").is_file():
        return
    m = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
    crop = int(m["crop_size"])
    write_record(run, StageRecord(
        kind=kind, name=run.name, label=kind.replace("_", "-"), seed=0,
        dataset=DatasetRef(data, str(root), source, target, list(m["classes"])),
        transform=Transform(int(m.get("resize_size") or crop * 8 // 7), crop, list(m.get("mean") or MEAN),
                            list(m.get("std") or STD)),
        artifacts={"model": "model.pt"}))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model):
    """A run folder as a training stage leaves it (record.json, model.pt, results.json, splits/), without
    spending a training."""
    from liteda.classifier import model_record
    from liteda.datasets import prepare_domains
    from liteda.utils import atomic_torch_save, write_json

    tmp = tmp_path_factory.mktemp("deploy_run")
    data, run = make_folder_dataset(tmp / "data"), tmp / "run"
    prepare_domains("Custom", data, ["src", "tgt"], run / "splits")
    atomic_torch_save(model_record(tiny_model, "mobilenet_v3_small", ["a", "b", "c"], 32, 256, 36), run / "model.pt")
    write_json(run / "results.json", {"task": "src2tgt", "target_test": {"acc": 55.0}})
    ensure_record(run, data)
    return tmp


def test_bench_cli_on_a_run_writes_reports(tiny_run):
    stem = tiny_run / "report" / "deploy_tiny"
    run = tiny_run / "run"
    common = ["--run", str(run), "--iters", "5", "--warmup", "1", "--calib-size", "8", "--threads", "1",
              "--cache-dir", str(tiny_run / "cache")]
    doc = bench_main([*common, "--precision", "fp32", "int8", "int8w", "--runtime", "torch", "ort",
                      "--report", str(stem)])
    names = [r["name"] for r in doc["rows"]]
    assert names == ["torch-fp32", "ort-fp32", "ort-int8", "ort-int8w"]
    saved = json.loads(stem.with_suffix(".json").read_text())
    assert saved["n_test"] > 0 and saved["n_calib"] == 8 and "machine" in saved
    torch_row, ort_row = doc["rows"][0], doc["rows"][1]
    assert saved["task"] == "src2tgt" and 0 <= torch_row["acc"] <= 100 and saved["run_target_test_acc"] == 55.0
    assert ort_row["agree_fp32"] == pytest.approx(100.0)
    assert "| ort-int8 |" in stem.with_suffix(".md").read_text()
    assert stem.with_suffix(".csv").read_text().startswith("name,runtime,precision")
    assert (run / "deploy" / "model_int8.onnx").is_file()
    recipe = read_metadata(run / "deploy" / "model_int8.onnx")["int8_recipe"]
    assert recipe["exclude"] == ["stem"] and recipe["excluded_nodes"] == 1  # the default keeps the stem in float
    assert doc["rows"][3]["size_mb"] < ort_row["size_mb"] / 3
    assert read_metadata(run / "deploy" / "model_fp32.onnx")["crop_size"] == 32  # the record's transform

    # no selection flags: the default set is the same four (OpenVINO and compiled PyTorch only when asked for);
    # the files are reused; the deploy folder's record
    doc = bench_main(common)
    assert [r["name"] for r in doc["rows"]] == names
    assert all(doc["export"]["artifacts"][n]["reused"] for n in ("ort-fp32", "ort-int8", "ort-int8w"))
    deploy = run / "deploy"
    assert {p.name for p in deploy.glob("bench.*")} == {"bench.json", "bench.md", "bench.csv"}
    rec = read_record(deploy)
    assert rec.kind == "bench" and rec.name == "run" and rec.label == "source-only" and rec.parents == {"model": ".."}
    assert {k: rec.artifacts[k] for k in ("ort-fp32", "ort-int8", "ort-int8w")} == {
        "ort-fp32": "model_fp32.onnx", "ort-int8": "model_int8.onnx", "ort-int8w": "model_int8w.onnx"}
    assert rec.artifacts["recommendation"] == "recommended.json"
    assert rec.artifacts["recommended"].startswith("recommended.")
    assert rec.results == "bench.json" and rec.transform == read_record(run).transform
    assert rec.splits_dir(deploy).resolve() == (run / "splits").resolve()


def test_export_reuses_files_until_the_model_or_the_recipe_changes(tiny_run, tmp_path):
    run = tiny_run / "run"
    common = ["--run", str(run), "--calib-size", "8", "--out", str(tmp_path / "dep"),
              "--cache-dir", str(tiny_run / "cache")]
    first = export_main([*common, "--artifacts", "ort-int8", "--calib-method", "minmax"])
    assert list(first["artifacts"]) == ["ort-fp32", "ort-int8"]  # what it is made from comes first
    assert not any(a["reused"] for a in first["artifacts"].values())
    again = export_main([*common, "--artifacts", "ort-int8", "--calib-method", "minmax"])
    assert all(a["reused"] for a in again["artifacts"].values())
    other = export_main([*common, "--artifacts", "ort-int8"])  # percentile: a new INT8 file, the same FP32 one
    assert other["artifacts"]["ort-fp32"]["reused"] and not other["artifacts"]["ort-int8"]["reused"]
    opset = export_main([*common, "--artifacts", "ort-int8", "--opset", "16"])  # the parent changes: both remade
    assert not any(a["reused"] for a in opset["artifacts"].values())
    assert json.loads((tmp_path / "dep" / "export.json").read_text())["artifacts"].keys() == {"ort-fp32", "ort-int8"}
    default = export_main(["--run", str(run), "--calib-size", "8", "--out", str(tmp_path / "dep2"),
                           "--cache-dir", str(tiny_run / "cache")])
    assert list(default["artifacts"]) == ["ort-fp32", "ort-fp16", "ort-int8", "ort-int8w"]


@pytest.fixture(scope="module")
def deploy_ctx(tiny_run):
    args = build_parser("bench").parse_args(["--run", str(tiny_run / "run"), "--calib-size", "8", "--threads", "1",
                                             "--cache-dir", str(tiny_run / "cache"), "--nncf-mode", "ptq",
                                             "--out", str(tiny_run / "every_artifact")])
    return make_context(args)


@pytest.mark.parametrize("name", ARTIFACTS.names())
def test_every_artifact_is_made_and_runs_or_says_why(name, deploy_ctx):
    """Each registered artifact: exported and run on the tiny model (logits of the right shape), or a one-line
    reason why not here (no GPU, package missing, wrong kind of model)."""
    cls = ARTIFACTS.get(name)
    assert cls.name == name and cls.runtime and cls.precision and cls.description
    art = cls()
    why = art.available(deploy_ctx)
    if why is None and cls.slow and not SLOW:
        pytest.skip(f"{name}: {SLOW_REASON}")
    if why is not None:
        assert isinstance(why, str) and why and "\n" not in why
        with pytest.raises(Exception, match="cannot be made here"):
            export_artifacts(deploy_ctx, [name], strict=[name])
        return
    export_artifacts(deploy_ctx, [name], strict=[name])
    if art.file:
        path = deploy_ctx.file_of(name)
        assert path.name == art.file and art.read_stamp(path)["source_sha256"] == deploy_ctx.source_sha
    loaded = art.load(deploy_ctx)
    x = deploy_ctx.inputs.test_x[:4]
    logits = loaded.run(np.ascontiguousarray(x))
    assert logits.shape == (4, 3) and np.isfinite(logits).all()
    assert loaded.runtime == cls.runtime and loaded.precision == cls.precision


def test_a_plugin_artifact_reaches_the_cli_and_the_table(tiny_run, tmp_path):
    """One class registered by a module on LITEDA_PLUGINS: listed by --help and `liteda list`, benchmarked."""
    (tmp_path / "liteda_dummy_artifact.py").write_text(
        "import numpy as np\n"
        "from liteda.deploy import ARTIFACTS, DeployArtifact, LoadedArtifact\n\n\n"
        "class Constant(DeployArtifact):\n"
        "    name, runtime, precision, description = 'const-fp32', 'const', 'fp32', 'always class 1'\n\n"
        "    def load(self, ctx):\n"
        "        run = lambda x: np.tile(np.array([[0.0, 1.0, 0.0]], np.float32), (len(x), 1))\n"
        "        return LoadedArtifact(self.name, self.runtime, self.precision, run, info={'providers': 'numpy'})\n\n\n"
        "ARTIFACTS.register('const-fp32', Constant)\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "LITEDA_PLUGINS": "liteda_dummy_artifact"}

    def liteda(*argv):
        out = subprocess.run([sys.executable, "-m", "liteda", *argv], capture_output=True, text=True, env=env,
                             cwd=ROOT)
        assert out.returncode == 0, out.stderr
        return out.stdout

    help_text = "".join(liteda("bench", "--help").split())  # argparse may wrap the list at a hyphen
    assert "const-fp32" in help_text and "const-fp32" in liteda("list", "artifacts").split()
    stem = tmp_path / "table"
    liteda("bench", "--run", str(tiny_run / "run"), "--artifacts", "torch-fp32", "const-fp32", "--iters", "2",
           "--warmup", "1", "--calib-size", "4", "--threads", "1", "--cache-dir", str(tiny_run / "cache"),
           "--out", str(tmp_path / "dep"), "--report", str(stem))
    rows = {r["name"]: r for r in json.loads(stem.with_suffix(".json").read_text())["rows"]}
    assert list(rows) == ["torch-fp32", "const-fp32"] and rows["const-fp32"]["providers"] == "numpy"
    assert rows["const-fp32"]["p50_ms"] is not None and "| const-fp32 |" in stem.with_suffix(".md").read_text()


def test_a_run_made_by_the_runner_is_benchmarked(run_args, tiny_dataset, tmp_path):
    """The training stage's run folder (its record written by the runner, or by ensure_record until it does)."""
    from liteda.runner import main as run_main

    run_main("source_only", "source_only", run_args())
    run = tmp_path / "run"
    ensure_record(run, tiny_dataset)
    doc = bench_main(["--run", str(run), "--artifacts", "torch-fp32", "ort-fp32", "--iters", "2", "--warmup", "1",
                      "--calib-size", "4", "--threads", "1", "--cache-dir", str(tmp_path / "cache")])
    assert [r["name"] for r in doc["rows"]] == ["torch-fp32", "ort-fp32"]
    assert doc["rows"][1]["agree_fp32"] == pytest.approx(100.0) and doc["task"] == read_record(run).task
    assert doc["run_target_test_acc"] == json.loads((run / "results.json").read_text())["target_test"]["acc"]
    arts = read_record(run / "deploy").artifacts
    assert arts["ort-fp32"] == "model_fp32.onnx" and not {"ort-int8", "ort-int8w"} & set(arts)
    assert arts["recommended"] in ("recommended.onnx", "recommended.pt")  # one of the two rows, copied


def _one_line_error(capsys, fn, argv) -> str:
    assert run_cli(fn, argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err
    return err


def _copy_run(src, dst):
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("deploy"))
    return dst


def test_bad_input_is_one_line(tiny_run, tmp_path, capsys):
    gone = _copy_run(tiny_run / "run", tmp_path / "gone")
    (gone / "model.pt").unlink()
    assert "does not exist" in _one_line_error(capsys, export_main, ["--run", str(gone)])
    assert "record.json" in _one_line_error(capsys, export_main, ["--run", str(tmp_path)])
    assert "not a folder" in _one_line_error(capsys, export_main, ["--run", str(tmp_path / "missing")])
    run = str(tiny_run / "run")
    assert "--precision" in _one_line_error(capsys, export_main, ["--run", run, "--precision", "int4"])
    assert "--calib-method" in _one_line_error(capsys, bench_main, ["--run", run, "--calib-method", "kl"])
    assert "unknown deploy artifact 'ort-int4'" in _one_line_error(capsys, bench_main,
                                                                   ["--run", run, "--artifacts", "ort-int4"])
    assert "--ckpt" in _one_line_error(capsys, export_main, ["--run", run, "--ckpt", run + "/model.pt"])  # record only
    assert "--min-agreement" in _one_line_error(capsys, bench_main, ["--run", run, "--min-agreement", "0"])
    assert "--agreement-size" in _one_line_error(capsys, bench_main, ["--run", run, "--agreement-size", "0"])
    assert "--nncf-max-iters" in _one_line_error(capsys, export_main, ["--run", run, "--nncf-max-iters", "-1"])
    junk = _copy_run(tiny_run / "run", tmp_path / "junk")
    (junk / "model.pt").write_bytes(b"not a checkpoint")
    assert "cannot be read" in _one_line_error(capsys, export_main, ["--run", str(junk)])


@pytest.mark.skipif(trt_unavailable_reason() is not None and not os.environ.get("LITEDA_SLOW_TESTS"),
                    reason="~25 s (onnxruntime's Distribution calibrator); runs with a GPU or LITEDA_SLOW_TESTS=1")
def test_fp8_qdq_onnx_for_tensorrt_is_valid(onnx_fp32, images, tmp_path):
    """The FP8 engine's input is made on the CPU: an opset-19 E4M3 Q/DQ file that onnx.checker accepts."""
    import onnx

    from liteda.deploy.tensorrt import quantize_fp8_qdq

    path, _ = onnx_fp32
    proto = onnx.load(quantize_fp8_qdq(path, tmp_path / "fp8.onnx", images[:2].numpy()))
    onnx.checker.check_model(proto)
    fp8 = onnx.TensorProto.FLOAT8E4M3FN
    assert any(t.data_type == fp8 for t in proto.graph.initializer)


@pytest.mark.skipif(trt_unavailable_reason() is None, reason="TensorRT and a GPU are present")
def test_trt_without_gpu_is_an_error_for_export_and_a_note_in_the_table(tiny_run, capsys):
    run = str(tiny_run / "run")
    assert "TensorRT" in _one_line_error(capsys, export_main, ["--run", run, "--runtime", "trt"])
    assert "TensorRT" in _one_line_error(capsys, export_main, ["--run", run, "--artifacts", "trt-fp16"])
    doc = bench_main(["--run", run, "--artifacts", "ort-fp32", "trt-fp16", "--iters", "2", "--warmup", "1",
                      "--calib-size", "4", "--threads", "1", "--cache-dir", str(tiny_run / "cache")])
    trt = doc["rows"][1]
    assert trt["name"] == "trt-fp16" and trt["note"] == f"skipped: {trt_unavailable_reason()}" and "p50_ms" not in trt


def test_trt_artifacts_build_and_run_through_the_engine_api(tiny_run, tmp_path, monkeypatch):
    """TensorRT cannot be installed here: its builder and runner are replaced by stand-ins (the engine is the
    ONNX file it was built from, run by ONNX Runtime) to check what the artifacts hand them and how their rows
    come out."""
    import liteda.deploy.tensorrt as trt_mod

    built = []

    def build_engine(onnx_path, precision, input_size, cache_dir, max_batch=32, calib_images=None):
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        engine = Path(cache_dir) / f"{Path(onnx_path).stem}-{precision}.engine"
        engine.write_bytes(Path(onnx_path).read_bytes())
        built.append((Path(onnx_path).name, precision, input_size, max_batch, len(calib_images)))
        return engine

    def trt_runner(engine_path):
        sess = make_session(engine_path, threads=1)
        return lambda x: sess.run(None, {"input": x})[0]

    monkeypatch.setattr(trt_mod, "trt_unavailable_reason", lambda: None)
    monkeypatch.setattr(trt_mod, "is_fp8_capable", lambda: False)
    monkeypatch.setattr(trt_mod, "build_engine", build_engine)
    monkeypatch.setattr(trt_mod, "trt_runner", trt_runner)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "stand-in GPU")
    doc = bench_main(["--run", str(tiny_run / "run"), "--runtime", "ort", "trt", "--precision", "fp32", "fp16",
                      "int8", "fp8", "--iters", "2", "--warmup", "1", "--calib-size", "4", "--threads", "1",
                      "--max-batch", "8", "--out", str(tmp_path / "dep"), "--cache-dir", str(tiny_run / "cache")])
    rows = {r["name"]: r for r in doc["rows"]}
    assert list(rows) == ["ort-fp32", "ort-fp16", "ort-int8", "trt-fp32", "trt-fp16", "trt-int8", "trt-fp8"]
    assert sorted(built) == [("model_fp32.onnx", p, SIZE, 8, 4) for p in ("fp16", "fp32", "int8")]
    assert rows["trt-fp32"]["agree_fp32"] == pytest.approx(100.0)
    assert rows["trt-fp32"]["providers"] == "TensorRT on stand-in GPU"
    assert rows["trt-int8"]["runtime"] == "trt" and rows["trt-int8"]["size_mb"] > 0
    assert "compute capability" in rows["trt-fp8"]["note"]
    assert read_record(tmp_path / "dep").artifacts["trt-fp16"] == "trt/model_fp32-fp16.engine"


@pytest.mark.skipif(trt_unavailable_reason() is not None, reason=f"TensorRT unavailable: {trt_unavailable_reason()}")
def test_trt_fp16_engine_matches_onnx(onnx_fp32, images, tmp_path):
    from liteda.deploy.tensorrt import build_engine, trt_runner

    path, _ = onnx_fp32
    engine = build_engine(path, "fp16", SIZE, tmp_path / "trt", max_batch=8)
    assert build_engine(path, "fp16", SIZE, tmp_path / "trt", max_batch=8) == engine  # cached
    out = trt_runner(engine)(images[:8].numpy())
    ref = onnx_logits(path, images[:8].numpy())
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.75


def test_bench_of_a_float_compressed_model(tiny_run, tiny_model, capsys):
    """A compress run (ECA + low-rank tail, float) goes through ONNX/ORT INT8 with its own record's data; a
    PyTorch-quantized one (dynamic) is refused in one line (ORT quantizes the float model instead)."""
    import copy

    from liteda.compress import save_compressed
    from liteda.compress.attention import swap_attention
    from liteda.compress.lowrank import lowrank_model
    from liteda.compress.quantize import quantize_dynamic_linear
    from liteda.record import copy_splits
    from liteda.utils import write_json

    run, out = tiny_run / "run", tiny_run / "compressed"
    model = copy.deepcopy(tiny_model)
    swap_attention(model, "eca")
    ops = [{"op": "attention", "kind": "eca"},
           {"op": "lowrank", "plan": lowrank_model(model, ratio=0.25, skip=("head", "backbone.features"))}]
    base = json.loads(json.dumps({"arch": "mobilenet_v3_small", "num_classes": 3, "bottleneck_dim": 256,
                                  "classes": ["a", "b", "c"], "crop_size": 32, "mean": None, "std": None}))
    save_compressed(model.eval(), base, ops, out / "compressed.pt")
    parent = read_record(run)
    copy_splits(run, out, parent)
    write_record(out, StageRecord(kind="compress", name="compressed", label="compressed", seed=0,
                                  dataset=parent.dataset, transform=parent.transform,
                                  artifacts={"compressed": "compressed.pt"}, parents={"model": "../run"}))
    write_json(out / "results.json", {"after": {"target_test": {"acc": 40.0}}})
    doc = bench_main(["--run", str(out), "--precision", "fp32", "int8", "--runtime", "torch", "ort", "--iters", "3",
                      "--warmup", "1", "--calib-size", "8", "--threads", "1", "--cache-dir", str(tiny_run / "cache")])
    assert [r["name"] for r in doc["rows"]] == ["torch-fp32", "ort-fp32", "ort-int8"]
    assert doc["rows"][1]["agree_fp32"] == pytest.approx(100.0) and (out / "deploy" / "model_int8.onnx").is_file()
    assert doc["run_target_test_acc"] == 40.0 and doc["task"] == "src2tgt"
    assert doc["checkpoint"] == str(out / "compressed.pt") and read_record(out / "deploy").name == "compressed"

    save_compressed(quantize_dynamic_linear(copy.deepcopy(model)), base, ops + [{"op": "quantize", "kind": "ptdq"}],
                    out / "compressed.pt", model)
    assert "without --quantize" in _one_line_error(capsys, export_main, ["--run", str(out)])


def identity_run(tiny_run, tiny_model, name: str = "identity", parent: str = "run") -> Path:
    """A compress run of ``parent`` that changed nothing (its model an exact copy)."""
    import copy

    from liteda.compress import save_compressed
    from liteda.record import copy_splits

    run, out = tiny_run / parent, tiny_run / name
    base = {"arch": "mobilenet_v3_small", "num_classes": 3, "bottleneck_dim": 256, "classes": ["a", "b", "c"],
            "crop_size": 32, "mean": None, "std": None}
    save_compressed(copy.deepcopy(tiny_model).eval(), base, [], out / "compressed.pt")
    rec = read_record(run)
    copy_splits(run, out, rec)
    write_record(out, StageRecord(kind="compress", name=name, label=name, seed=0, dataset=rec.dataset,
                                  transform=rec.transform, artifacts={"compressed": "compressed.pt"},
                                  parents={"model": f"../{parent}"}))
    return out


def test_bench_of_a_compressed_run_measures_agreement_with_its_float_student(tiny_run, tiny_model):
    """A compress run's bench reads its trained ancestor through the records' ``model`` parents and scores every
    artifact against that float student on the same unlabeled images (label-free, at the student's own input
    size): an unchanged copy agrees 100%, a training run's own bench has no such column."""
    run, out = tiny_run / "run", identity_run(tiny_run, tiny_model)
    common = ["--precision", "fp32", "--runtime", "torch", "ort", "--iters", "2", "--warmup", "1", "--calib-size", "8",
              "--threads", "1", "--cache-dir", str(tiny_run / "cache")]
    doc = bench_main(["--run", str(out), *common])
    assert doc["student_run"] == str(run)
    assert [r["agree_student"] for r in doc["rows"]] == pytest.approx([100.0, 100.0])
    assert "agree w/ float student" in (out / "deploy" / "bench.md").read_text()
    own = bench_main(["--run", str(run), *common, "--report", str(tiny_run / "own_bench")])
    assert own["student_run"] is None and all("agree_student" not in r for r in own["rows"])


def test_recommend_across_runs_of_one_student_times_the_passing_artifacts_together(tiny_run, tiny_model, capsys):
    """`liteda recommend` applies bench's rule to every artifact of the student's run and of the runs compressed
    from it, each scored against that one float student, after timing the passing ones interleaved; it copies
    the chosen file, writes its loader and a table. Runs of two students, or not benchmarked, are refused."""
    import shutil

    from liteda.deploy.across import main as recommend_main

    run, twin = tiny_run / "run", identity_run(tiny_run, tiny_model, "twin")
    common = ["--precision", "fp32", "--runtime", "torch", "ort", "--iters", "2", "--warmup", "1", "--calib-size", "4",
              "--agreement-size", "6", "--threads", "1", "--cache-dir", str(tiny_run / "cache")]
    for r in (run, twin):
        bench_main(["--run", str(r), *common])
    out = tiny_run / "chosen"
    choice = recommend_main(["--runs", str(run), str(twin), "--out", str(out), "--rounds", "3", "--threads", "1"])
    cands = {c["name"]: c for c in choice["candidates"]}
    assert set(cands) == {"run/torch-fp32", "run/ort-fp32", "twin/torch-fp32", "twin/ort-fp32"}
    assert all(c["passes"] and c["agree_unlabeled"] == 100.0 for c in cands.values())  # twin vs the student
    assert choice["candidate"] == min(cands.values(), key=lambda c: c["p50_ms"])["name"]
    assert choice["candidate"] == f"{choice['run']}/{choice['artifact']}" and "float student (run," in choice["rule"]
    assert choice["timing"]["rounds"] == 3 and choice["student_run"] == str(run.resolve())
    assert choice["speedup_vs_eager"] == pytest.approx(cands["run/torch-fp32"]["p50_ms"] / choice["p50_ms"])
    src = (out / choice["copied_from"]).resolve()
    assert src.parent == (tiny_run / choice["run"] / "deploy").resolve() or src.parent.parent == tiny_run / choice["run"]
    assert (out / choice["file"]).read_bytes() == src.read_bytes()
    assert (out / "recommended_example.py").is_file() and json.loads((out / "recommended.json").read_text()) == choice
    table = (out / "recommended.md").read_text()
    assert "**chosen**" in table and "not read by the rule" in table and (out / "recommended.csv").is_file()

    other = tiny_run / "other"
    _copy_run(run, other)
    assert "different float students" in _one_line_error(
        capsys, recommend_main, ["--runs", str(run), str(other), "--out", str(out)])
    assert "liteda bench --run" in _one_line_error(capsys, recommend_main, ["--runs", str(other), "--out", str(out)])
    shutil.copytree(twin, tiny_run / "twin2")
    assert "two runs of one name" in _one_line_error(
        capsys, recommend_main, ["--runs", str(twin), str(tiny_run / "twin2"), "--out", str(out)])
    third = identity_run(tiny_run, tiny_model, "third")
    bench_main(["--run", str(third), *common[:-4], "--threads", "2", *common[-2:]])
    assert "different --threads" in _one_line_error(
        capsys, recommend_main, ["--runs", str(twin), str(third), "--rounds", "0", "--out", str(out)])


# ----------------------------------------------------------------------------- interleaved latency
def test_paired_ratio_and_interleaved_blocks():
    from liteda.deploy.bench import interleaved_latency, paired_ratio

    r = paired_ratio([4.0, 6.0, 8.0, 4.0], [2.0, 3.0, 4.0, 2.0])
    assert r["speedup_median"] == pytest.approx(2.0) and r["speedup_ci95"] == pytest.approx([2.0, 2.0])
    calls = []
    runs = {"a": lambda x: calls.append("a"), "b": lambda x: calls.append("b")}
    blocks = interleaved_latency(runs, {"a": None, "b": None}, rounds=5, calls=3, warmup=2)
    assert [len(v) for v in blocks.values()] == [5, 5] and calls.count("a") == calls.count("b") == 2 + 15
    assert all(v > 0 for b in blocks.values() for v in b)


def test_latency_ratio_script_on_a_run(tiny_run, onnx_fp32, capsys):
    """Eager model.pt vs its ONNX file: every artifact timed, speed-ups with an interval, three report files."""
    stem = tiny_run / "ratio"
    base = str(tiny_run / "run" / "model.pt")
    int8 = onnx_fp32[0].with_name("model_int8.onnx")
    quantize_int8(onnx_fp32[0], int8, np.random.default_rng(0).standard_normal((4, 3, SIZE, SIZE)).astype(np.float32))
    out = subprocess.run([sys.executable, "benchmarks/latency_ratio.py", "--baseline", base, "--candidates",
                          str(onnx_fp32[0]), str(int8), "--rounds", "3", "--calls", "2", "--warmup", "1", "--out", str(stem)],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    doc = json.loads(stem.with_suffix(".json").read_text())
    base_row, cand, q = doc["rows"]
    assert cand["vs_fp32_file"] is None and q["precision"] == "int8" and q["vs_fp32_file"]["fp32"] == cand["name"]
    assert base_row["runtime"] == "torch" and base_row["speedup"] is None and len(base_row["block_means_ms"]) == 3
    assert base_row["input_px"] == SIZE  # the run's record's crop
    assert cand["runtime"] == "ort" and cand["input_px"] == SIZE
    lo, hi = cand["speedup"]["speedup_ci95"]
    assert lo <= cand["speedup"]["speedup_median"] <= hi
    assert "speed-up vs baseline" in stem.with_suffix(".md").read_text()
    assert stem.with_suffix(".csv").read_text().startswith("artifact,runtime")
    bad = subprocess.run([sys.executable, "benchmarks/latency_ratio.py", "--baseline", base, "--candidates",
                          "missing.onnx", "--out", str(stem)], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "missing.onnx" in bad.stderr and bad.stderr.count("\n") == 1


def test_latency_ratio_pairs_an_int8_file_with_the_fp32_file_of_its_folder_on_its_runtime():
    """ONNX Runtime INT8 <-> model_fp32.onnx, NNCF's INT8 IR <-> the OpenVINO FP32 IR (or the ONNX file run by
    OpenVINO) in the same folder; never across runtimes or folders."""
    import importlib.util
    from types import SimpleNamespace as Art

    spec = importlib.util.spec_from_file_location("latency_ratio", ROOT / "benchmarks" / "latency_ratio.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    art = lambda rt, prec, path: (Art(runtime=rt, precision=prec, path=path), 224)  # noqa: E731
    built = {"ort32": art("ort", "fp32", "/r/deploy/model_fp32.onnx"),
             "ort8": art("ort", "int8", "/r/deploy/model_int8.onnx"),
             "ov32": art("openvino", "fp32", "/r/deploy_ov/openvino_fp32.xml"),
             "ov8": art("openvino", "int8", "/r/deploy_ov/openvino_int8.xml"),
             "other8": art("openvino", "int8", "/q/deploy_ov/openvino_int8.xml")}
    sib = {n: mod.fp32_sibling(n, a, built) for n, (a, _) in built.items()}
    assert sib == {"ort32": None, "ort8": "ort32", "ov32": None, "ov8": "ov32", "other8": None}


def test_latency_ratio_tells_apart_runs_of_one_name_from_two_runs_trees(tmp_path):
    """A 160 px `kd_strongaug` beside the 224 px one: labels carry the runs tree where the names would collide,
    and the six-task summary keeps them as two runs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("latency_ratio", ROOT / "benchmarks" / "latency_ratio.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    files = {}
    for tree, run in (("runs_224", "kd_strongaug"), ("runs_160", "kd_strongaug"), ("runs_160", "relu")):
        deploy = tmp_path / tree / "OfficeCaltech" / "A2W" / run / "seed0" / "deploy"
        deploy.mkdir(parents=True)
        for f in ("model_fp32.onnx", "openvino_int8.xml"):
            (deploy / f).write_text("")
        files[tree, run] = deploy
    specs = [str(files["runs_224", "kd_strongaug"].parent), str(files["runs_224", "kd_strongaug"] / "model_fp32.onnx"),
             str(files["runs_160", "kd_strongaug"] / "model_fp32.onnx"),
             "openvino:" + str(files["runs_160", "kd_strongaug"] / "openvino_int8.xml"),
             str(files["runs_160", "relu"] / "model_fp32.onnx")]
    names = mod.labels(specs)
    assert names == ["runs_224/kd_strongaug", "runs_224/kd_strongaug/model_fp32.onnx",
                     "runs_160/kd_strongaug/model_fp32.onnx", "openvino:runs_160/kd_strongaug/openvino_int8.xml",
                     "relu/model_fp32.onnx"]
    spec = importlib.util.spec_from_file_location("speedup_summary", ROOT / "benchmarks" / "speedup_summary.py")
    summary = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summary)
    assert [summary.run_label({"name": n, "path": p}) for n, p in zip(names[1:], specs[1:])] == [
        "runs_224/kd_strongaug", "runs_160/kd_strongaug", "runs_160/kd_strongaug", "relu"]


def test_ort_profile_splits_convolutions_by_kind(onnx_fp32):
    import importlib.util

    spec = importlib.util.spec_from_file_location("ort_profile", ROOT / "benchmarks" / "ort_profile.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    doc = mod.profile(str(onnx_fp32[0]), runs=3)
    kinds = " ".join(doc["ms_per_call"])
    assert doc["calls"] == 3 and doc["input_px"] == SIZE and doc["total_kernel_ms"] > 0
    assert "(stem)" in kinds and "(1x1)" in kinds and "(depthwise 3x3)" in kinds


def test_cuda_runtime_rows_say_why_they_did_not_run(tiny_model, deploy_ctx):
    from liteda.deploy.runtimes.cuda import cuda_runner
    from liteda.utils import UserError

    with pytest.raises(UserError, match="fp32/fp16/bf16"):
        cuda_runner(tiny_model, "int8")
    if not torch.cuda.is_available():
        for name in (n for n in ARTIFACTS.names() if ARTIFACTS.get(n).runtime == "cuda"):
            assert ARTIFACTS.get(name)().available(deploy_ctx) == "no CUDA GPU visible to torch"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_replay_matches_eager(tiny_model, images):
    from liteda.deploy.runtimes.cuda import cuda_runner

    x = images[:4].numpy()
    eager, graph = cuda_runner(tiny_model, "fp32", graphs=False), cuda_runner(tiny_model, "fp32", graphs=True)
    np.testing.assert_allclose(graph.run(x), eager.run(x), atol=1e-3)
    np.testing.assert_allclose(graph.run(x[::-1].copy()), eager.run(x[::-1].copy()), atol=1e-3)  # replay, new data


def test_int8_calibration_of_an_activation_with_no_spread_falls_back_to_minmax(tmp_path):
    """A near-constant activation (values about 3.0 varying by 1e-7): the percentile histogram cannot be binned;
    the export falls back to min/max, says so in the recipe, and the INT8 file runs."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from torch import nn

    from liteda.deploy.ort import quantize_int8

    class NoSpread(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2, self.fc = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 1), nn.Linear(4, 3)
            with torch.no_grad():
                self.c2.weight.fill_(1e-7)
                self.c2.bias.fill_(3.0)

        def forward(self, x):
            return self.fc(self.c2(torch.relu(self.c1(x))).mean((2, 3)))

    torch.onnx.export(NoSpread().eval(), (torch.randn(1, 3, 16, 16),), tmp_path / "m.onnx", input_names=["input"],
                      output_names=["logits"], dynamo=False, opset_version=17,
                      dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}})
    calib = np.random.default_rng(0).standard_normal((8, 3, 16, 16)).astype(np.float32)
    recipe = quantize_int8(tmp_path / "m.onnx", tmp_path / "m_int8.onnx", calib, method="percentile")
    assert "min/max used" in recipe["calib_fallback"]
    out = ort.InferenceSession(str(tmp_path / "m_int8.onnx")).run(None, {"input": calib[:2]})[0]
    assert out.shape == (2, 3) and np.isfinite(out).all()


# ----------------------------------------------------------------------------- OpenVINO IR and NNCF INT8
@pytest.mark.skipif(not HAVE_OPENVINO, reason="openvino not installed (pip install liteda[openvino])")
def test_openvino_ir_matches_onnx_carries_metadata_and_is_reused(tiny_run, tmp_path):
    from liteda.deploy.openvino import ir_logits, read_ir_metadata

    common = ["--run", str(tiny_run / "run"), "--calib-size", "8", "--out", str(tmp_path / "dep"),
              "--cache-dir", str(tiny_run / "cache")]
    first = export_main([*common, "--artifacts", "openvino-ir-fp32"])
    assert list(first["artifacts"]) == ["ort-fp32", "openvino-ir-fp32"]
    xml = Path(first["artifacts"]["openvino-ir-fp32"]["path"])
    assert xml.name == "openvino_fp32.xml" and xml.with_suffix(".bin").is_file()
    assert first["artifacts"]["openvino-ir-fp32"]["size_mb"] * 1e6 > xml.with_suffix(".bin").stat().st_size  # both
    meta = read_ir_metadata(xml)
    assert meta["classes"] == ["a", "b", "c"] and meta["crop_size"] == SIZE and meta["precision"] == "fp32"
    x = np.random.default_rng(0).standard_normal((5, 3, SIZE, SIZE)).astype(np.float32)
    onnx = tmp_path / "dep" / "model_fp32.onnx"
    np.testing.assert_allclose(ir_logits(xml, x), onnx_logits(onnx, x), atol=1e-4, rtol=1e-4)  # FP32 weights kept
    again = export_main([*common, "--artifacts", "openvino-ir-fp32"])
    assert all(a["reused"] for a in again["artifacts"].values())


@pytest.mark.skipif(not HAVE_NNCF, reason="openvino/nncf not installed (pip install liteda[openvino])")
def test_nncf_accuracy_control_is_driven_by_label_free_agreement(onnx_fp32, images, tmp_path, monkeypatch):
    """The metric NNCF's accuracy control optimises is the top-1 agreement with the FP32 IR on the calibration
    images: the FP32 model scores 1.0 on it, per image, and no label is in its data."""
    import nncf

    from liteda.deploy.openvino import convert_onnx_to_ir, ir_logits, quantize_nncf, read_ir_metadata

    xml = tmp_path / "fp32.xml"
    convert_onnx_to_ir(onnx_fp32[0], xml)
    seen = {}
    real = nncf.quantize_with_accuracy_control

    def spy(model, calibration_dataset, validation_dataset, validation_fn, **kw):
        import openvino as ov

        items = list(validation_dataset.get_data())
        seen.update(items=items, max_drop=kw["max_drop"],
                    fp32=validation_fn(ov.Core().compile_model(model, "CPU"), items))
        return real(model, calibration_dataset, validation_dataset, validation_fn, **kw)

    monkeypatch.setattr(nncf, "quantize_with_accuracy_control", spy)
    calib = images[:12].numpy()
    recipe = quantize_nncf(xml, tmp_path / "int8.xml", calib, "accuracy-control", min_agreement=10.0)
    ref = ir_logits(xml, calib).argmax(1)
    assert [int(r) for _, r in seen["items"]] == ref.tolist()  # (image, FP32 prediction): nothing else
    assert all(x.shape == (1, 3, SIZE, SIZE) for x, _ in seen["items"])
    assert seen["fp32"] == (1.0, [1.0] * 12) and seen["max_drop"] == pytest.approx(0.9)
    assert recipe["mode"] == "accuracy-control" and recipe["agreement_on_calibration_images"] >= 10.0
    assert recipe["calib_data"] == "unlabeled target-train images" and recipe["fake_quantize_nodes"] > 0
    assert read_ir_metadata(tmp_path / "int8.xml")["int8_recipe"] == recipe
    out = ir_logits(tmp_path / "int8.xml", images.numpy())
    assert out.shape == (len(images), 3) and np.isfinite(out).all()


@pytest.mark.skipif(not (HAVE_NNCF and SLOW), reason="openvino/nncf missing, or the restoring loop (about a minute): "
                                                     "LITEDA_SLOW_TESTS=1")
def test_nncf_accuracy_control_returns_layers_to_float_until_the_agreement_is_met(onnx_fp32, images, tmp_path):
    from liteda.deploy.openvino import convert_onnx_to_ir, quantize_nncf

    xml = tmp_path / "fp32.xml"
    convert_onnx_to_ir(onnx_fp32[0], xml)
    calib = images[:8].numpy()
    ptq = quantize_nncf(xml, tmp_path / "ptq.xml", calib, "ptq")
    ac = quantize_nncf(xml, tmp_path / "ac.xml", calib, "accuracy-control", min_agreement=100.0, max_iters=3)
    assert ac["agreement_on_calibration_images"] >= ptq["agreement_on_calibration_images"]
    assert ac["fake_quantize_nodes"] <= ptq["fake_quantize_nodes"]


# ----------------------------------------------------------------------------- the compiled PyTorch path
def test_compiled_runners_only_see_batch_1_and_the_static_batch():
    from liteda.deploy.runtimes.inductor import static_batches

    shapes = []

    def run(x):
        shapes.append(len(x))
        return x[:, :2, 0, 0] * 2

    wrapped = static_batches(run, batch=4)
    x = np.arange(10 * 3, dtype=np.float32).reshape(10, 3, 1, 1)
    np.testing.assert_array_equal(wrapped(x), x[:, :2, 0, 0] * 2)  # chunks of 4, the last padded, cut back
    np.testing.assert_array_equal(wrapped(x[:1]), x[:1, :2, 0, 0] * 2)
    assert shapes == [4, 4, 4, 1]


def test_inductor_artifacts_say_why_without_a_compiler_or_the_api(deploy_ctx, monkeypatch):
    import torch._inductor
    import torch._inductor.cpp_builder as cpp_builder

    def no_compiler():
        raise RuntimeError("no g++")

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", no_compiler)
    for name in ("torch-compile", "torch-aoti"):
        why = ARTIFACTS.get(name)().available(deploy_ctx)
        assert "C++ compiler" in why and "\n" not in why
    monkeypatch.delattr(torch._inductor, "aoti_compile_and_package")
    assert "AOTInductor" in ARTIFACTS.get("torch-aoti")().available(deploy_ctx)


@pytest.mark.skipif(not SLOW, reason=SLOW_REASON)
def test_aoti_package_runs_like_eager_and_carries_metadata(tiny_model, images, tmp_path):
    from liteda.deploy.runtimes.inductor import aoti_missing, aoti_package, aoti_runner

    if aoti_missing():
        pytest.skip(aoti_missing())
    info = aoti_package(tiny_model, tmp_path / "m.pt2", SIZE, {"classes": ["a", "b", "c"]})
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    art = aoti_runner(tmp_path / "m.pt2", threads=1)
    with torch.no_grad():
        ref = tiny_model(images).numpy()
    np.testing.assert_allclose(art.run(images.numpy()), ref, atol=1e-3, rtol=1e-3)  # dynamic batch: 32
    np.testing.assert_allclose(art.run(images[:1].numpy()), ref[:1], atol=1e-3, rtol=1e-3)
    meta = torch._inductor.aoti_load_package(str(tmp_path / "m.pt2")).get_metadata()
    assert json.loads(meta["classes"]) == ["a", "b", "c"]


# ----------------------------------------------------------------------------- the recommendation
class TargetTestBlind(dict):
    """A benchmark row that fails the test if the recommendation reads anything measured on target-test."""

    HIDDEN = ("acc", "agree_fp32", "n_images")

    def __getitem__(self, k):
        assert k not in self.HIDDEN, f"the recommendation read '{k}' (target-test)"
        return super().__getitem__(k)

    def get(self, k, default=None):
        assert k not in self.HIDDEN, f"the recommendation read '{k}' (target-test)"
        return super().get(k, default)


def _row(name, p50, agree, **kw):
    return TargetTestBlind(name=name, runtime=name.split("-")[0], precision=name.split("-")[-1], p50_ms=p50,
                           agree_unlabeled=agree, acc=100.0 - p50, agree_fp32=100.0, **kw)


def test_recommendation_is_the_fastest_artifact_that_agrees_enough():
    from liteda.deploy.recommend import recommend

    rows = [_row("torch-fp32", 5.0, 100.0), _row("ort-fp32", 1.5, 100.0), _row("ort-int8", 0.9, 97.0),
            _row("openvino-fp32", 1.2, 99.2), _row("openvino-int8", 1.2, 99.5),
            _row("broken-int8", 0.1, 100.0, logits_finite=False),
            TargetTestBlind(name="trt-fp16", runtime="trt", precision="fp16", note="skipped: no GPU")]
    choice = recommend(rows, 99.0, {"split": "target-train", "n": 256})
    assert choice["artifact"] == "openvino-fp32"  # ort-int8 is faster but agrees less; a tie keeps registry order
    assert choice["p50_ms"] == 1.2 and choice["agree_unlabeled"] == 99.2 and choice["min_agreement"] == 99.0
    assert "99%" in choice["rule"] and "unlabeled target-train" in choice["rule"]
    assert "ort-int8 (0.90 ms, 97.00%)" in choice["why"] and choice["agreement_images"]["split"] == "target-train"
    cands = {c["name"]: c for c in choice["candidates"]}
    assert list(cands) == [r["name"] for r in rows]
    assert cands["ort-int8"]["passes"] is False and "97.00% < 99%" in cands["ort-int8"]["why_not"]
    assert cands["broken-int8"]["passes"] is False and cands["trt-fp16"]["why_not"] == "skipped: no GPU"
    assert recommend(rows, 95.0)["artifact"] == "ort-int8"  # the threshold is the flag's
    none = recommend(rows[2:3], 99.0)
    assert none["artifact"] is None and "--min-agreement" in none["why"]


def test_bench_recommends_from_unlabeled_target_train_images_and_writes_a_loader(tiny_run, tmp_path, monkeypatch):
    """The agreement images are target-train images with their labels dropped (held out from calibration);
    the recommended file is a copy of the chosen artifact's; its example classifies an image as the benchmark's
    preprocessing does."""
    import liteda.datasets
    from liteda.datasets import decode_image, read_image_list
    from liteda.deploy.inputs import normalised

    requested = []
    real = liteda.datasets.load_images

    def spy(root, items, *a, **kw):
        requested.append(list(items))
        return real(root, items, *a, **kw)

    monkeypatch.setattr(liteda.datasets, "load_images", spy)
    run, out = tiny_run / "run", tmp_path / "dep"
    doc = bench_main(["--run", str(run), "--artifacts", "torch-fp32", "ort-fp32", "ort-int8", "--iters", "5",
                      "--warmup", "1", "--calib-size", "4", "--agreement-size", "6", "--threads", "1",
                      "--out", str(out), "--cache-dir", str(tiny_run / "cache")])
    rec = read_record(run)
    train = {p for p, _ in read_image_list(run / "splits" / "tgt_train.txt", rec.dataset.root)}
    test = read_image_list(run / "splits" / "tgt_test.txt", rec.dataset.root)
    calib, _, agree = requested  # calibration, target-test (scored), agreement
    assert all(p in train and y == -1 for p, y in calib + agree) and not {p for p, _ in agree} & {p for p, _ in calib}
    assert len(agree) == 6 and doc["n_unlabeled"] == 6

    choice = json.loads((out / "recommended.json").read_text())
    assert choice == doc["recommended"] and choice["agreement_images"] == {
        "split": "target-train", "labels": "not read", "n": 6, "also_calibration_images": 0, "seed": 0}
    rows = {r["name"]: r for r in doc["rows"]}
    assert rows["torch-fp32"]["agree_unlabeled"] == 100.0 and all(r["n_unlabeled"] == 6 for r in rows.values())
    passing = [r for r in rows.values() if r["agree_unlabeled"] >= 99.0]
    assert choice["artifact"] == min(passing, key=lambda r: r["p50_ms"])["name"]
    assert [c["name"] for c in choice["candidates"]] == list(rows)
    src = Path(rows[choice["artifact"]]["path"])
    copy = out / choice["file"]
    assert copy.name == f"recommended{src.suffix}" and copy.read_bytes() == src.read_bytes()
    assert read_record(out).artifacts["recommended"] == copy.name
    assert "**Recommended: " in (out / "bench.md").read_text()

    image = rec.dataset.root + "/" + test[0][0]
    spec = importlib.util.spec_from_file_location("recommended_example", out / "recommended_example.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    tf = rec.transform
    expected = normalised(torch.from_numpy(decode_image(Path(image), tf.resize).copy())[None], tf.crop, tf.mean, tf.std)
    np.testing.assert_allclose(example.preprocess(image), expected, atol=1e-5)
    res = subprocess.run([sys.executable, str(out / "recommended_example.py"), image], capture_output=True, text=True,
                         cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() in rec.dataset.classes

    # a later benchmark with nothing to recommend (torch-int8 cannot run a float model) leaves no stale file behind
    doc = bench_main(["--run", str(run), "--artifacts", "torch-int8", "--iters", "2", "--warmup", "1",
                      "--calib-size", "4", "--agreement-size", "6", "--threads", "1",
                      "--out", str(out), "--cache-dir", str(tiny_run / "cache")])
    assert doc["recommended"]["artifact"] is None and "no benchmarked artifact" in doc["recommended"]["why"]
    assert sorted(p.name for p in out.glob("recommended*")) == ["recommended.json"]
    assert "recommended" not in read_record(out).artifacts


@pytest.mark.parametrize("name", ARTIFACTS.names())
def test_every_artifact_example_is_valid_python(name, deploy_ctx):
    from liteda.deploy.recommend import example_script, recommend

    art = ARTIFACTS.get(name)()
    code = art.loader_code(deploy_ctx, f"recommended{Path(art.file or 'x.pt').suffix}")
    if code is None:
        pytest.skip(f"{name}: no standalone example")
    choice = recommend([{"name": name, "runtime": art.runtime, "precision": art.precision, "p50_ms": 1.0,
                         "agree_unlabeled": 100.0}], 99.0)
    script = example_script(deploy_ctx, choice, art.description, "recommended.x", code)
    compile(script, f"{name}_example.py", "exec")
    assert "def run(x)" in script or "run = " in script


# ----------------------------------------------------------------------------- the CPU's instruction sets
@pytest.mark.parametrize("flags, dot", [("fpu sse2 avx2 fma", "none (AVX2 vpmaddubsw)"),
                                        ("avx2 avx512f avx512_vnni", "AVX512-VNNI"),
                                        ("avx2 avx_vnni", "AVX-VNNI"),
                                        ("avx2 avx512f avx512_vnni amx_tile amx_int8 amx_bf16", "AMX")])
def test_cpu_isa_names_the_int8_dot_product(flags, dot, tmp_path):
    from liteda.deploy.machine import cpu_flags, cpu_isa, int8_dot_product

    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t: other\n")
    assert cpu_flags(info) == set(flags.split()) and int8_dot_product(cpu_flags(info)) == dot
    isa = cpu_isa(info)
    if isa["arch"] in ("x86_64", "AMD64"):
        assert isa["flags"]["AVX2"] and isa["flags"]["AMX"] == ("amx_tile" in flags)
    assert cpu_flags(tmp_path / "missing") is None and int8_dot_product(None) == "unknown"


def test_ort_int8_weight_range_follows_the_cpu_unless_asked(monkeypatch):
    """ONNX Runtime's own INT8: 7-bit weights (reduce_range) where the CPU has no INT8 dot product, 8-bit where it
    has one; either flag overrides."""
    from liteda.deploy import machine
    from liteda.deploy.cli import build_parser
    from liteda.deploy.runtimes.ort import reduce_range

    parse = lambda *a: build_parser("bench").parse_args(["--run", "R", *a])  # noqa: E731
    monkeypatch.setattr(machine, "cpu_flags", lambda *a: {"avx2", "fma"})
    assert reduce_range(parse()) is True
    monkeypatch.setattr(machine, "cpu_flags", lambda *a: {"avx2", "avx512_vnni"})
    assert reduce_range(parse()) is False
    assert reduce_range(parse("--reduce-range")) is True and reduce_range(parse("--no-reduce-range")) is False


def test_bench_json_records_isa_flags_threads_and_runtime_versions(tiny_run, tmp_path):
    stem = tmp_path / "b"
    bench_main(["--run", str(tiny_run / "run"), "--artifacts", "torch-fp32", "--iters", "2", "--warmup", "1",
                "--calib-size", "4", "--agreement-size", "4", "--threads", "1", "--out", str(tmp_path / "dep"),
                "--cache-dir", str(tiny_run / "cache"), "--report", str(stem)])
    doc = json.loads(stem.with_suffix(".json").read_text())
    isa, versions = doc["machine"]["isa"], doc["machine"]["runtime_versions"]
    assert doc["threads"] == 1 and doc["rows"][0]["threads"] == 1
    assert isa["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability() and isa["int8_dot_product"]
    if Path("/proc/cpuinfo").is_file() and isa["arch"] == "x86_64":
        assert {"AVX2", "AVX-512", "AVX512-VNNI", "AVX-VNNI", "AMX"} <= set(isa["flags"])
        assert isa["flags"]["AVX2"] == ("avx2" in Path("/proc/cpuinfo").read_text())
    assert versions["torch"] and versions["onnxruntime"] and "openvino" in versions and "nncf" in versions
    md = stem.with_suffix(".md").read_text()
    assert "CPU instruction sets:" in md and "INT8 dot product" in md and "threads: 1" in md
    assert f"onnxruntime {versions['onnxruntime']}" in md


def test_fma_bound_credits_each_artifact_with_the_float_models_macs(tiny_run, tmp_path):
    """bs32 images/s x the run model's MACs at the artifact's size, as a share of a measured GEMM peak."""
    lat = tmp_path / "lat.json"
    lat.write_text(json.dumps({"rows": [{"path": str(tiny_run / "run" / "model.pt")}]}))
    rec = {"artifact": "kd / ort-fp32", "precision": "fp32", "input_px": SIZE, "bs32_img_s": 100.0, "threads": 1,
           "median_ms": 2.0, "baseline_ms": 8.0,
           "bench_threads": 1, "task": "A2W", "source": str(lat), "machine": "test cpu"}
    summary = tmp_path / "speedup.json"
    summary.write_text(json.dumps({"records": [rec, {**rec, "task": "W2A", "bs32_img_s": 300.0}]}))
    stem = tmp_path / "fma"
    out = subprocess.run([sys.executable, "benchmarks/fma_bound.py", "--summary", str(summary), "--out", str(stem),
                          "--gemm", "128", "--reps", "2"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    doc = json.loads(stem.with_suffix(".json").read_text())
    (row,) = doc["summary"]
    assert row["tasks"] == ["A2W", "W2A"] and row["bs32_img_s"] == 200.0 and row["macs"] > 0
    assert row["gmacs"] == pytest.approx(200.0 * row["macs"] / 1e9)
    assert row["pct_of_peak"] == pytest.approx(100 * row["gmacs"] / doc["peak_gmacs"])
    assert row["gmacs_bs1"] == pytest.approx(row["macs"] / 2.0 / 1e6)  # MACs per ms -> G MAC/s
    assert row["gmacs_for_10x"] == pytest.approx(row["macs"] / 0.8 / 1e6)  # a tenth of eager's 8 ms
    assert "G MAC/s" in stem.with_suffix(".md").read_text()
    bad = subprocess.run([sys.executable, "benchmarks/fma_bound.py", "--summary", "nope.json", "--out", str(stem)],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "nope.json" in bad.stderr and bad.stderr.count("\n") == 1


def write_latency_runs(root, runs: dict) -> list:
    """Per ``(task, seed): (fp32 speed-up, int8 speed-up, int8 acc)``: a float run with its bench record of an FP32
    and an INT8 file under ``root/<task>/kd/seed<k>``, and a latency_ratio.py JSON of them in ``root``."""
    docs = []
    for (task, seed), (sp_fp32, sp_int8, acc8) in runs.items():
        run = root / task / "kd" / f"seed{seed}"
        (run / "deploy").mkdir(parents=True)
        (run / "results.json").write_text(json.dumps({"target_test": {"acc": 95.0}}))
        fp32, int8 = run / "deploy" / "model_fp32.onnx", run / "deploy" / "model_int8.onnx"
        (run / "deploy" / "bench.json").write_text(json.dumps({"rows": [
            {"name": "ort-fp32", "runtime": "ort", "path": str(fp32), "acc": 95.0, "bs32_img_s": 100.0, "threads": 1},
            {"name": "ort-int8", "runtime": "ort", "path": str(int8), "acc": acc8, "bs32_img_s": 150.0, "threads": 1}]}))
        row = lambda p, prec, sp, vs: {"path": str(p), "runtime": "ort", "precision": prec, "input_px": 224,  # noqa: E731
                                       "median_ms": 8.0 / sp, "speedup": {"speedup_median": sp},
                                       "vs_fp32_file": vs and {"speedup_median": vs}}
        doc = {"threads": 1, "machine_label": "test cpu", "rows": [
            {"path": str(run / "model.pt"), "runtime": "torch", "precision": "fp32", "input_px": 224, "median_ms": 8.0},
            row(fp32, "fp32", sp_fp32, None), row(int8, "int8", sp_int8, sp_int8 / sp_fp32)]}
        docs.append(root / f"latency_ratio_{task}_s{seed}_1thread.json")
        docs[-1].write_text(json.dumps(doc))
    return docs


def test_speedup_summary_pairs_each_latency_row_with_the_bench_record_of_that_file(tmp_path):
    """Per artifact over tasks: the mean interleaved speed-up, the accuracy its own bench row measured against the
    float run's, and INT8 against the same run's FP32 file on the same runtime at bs32."""
    write_latency_runs(tmp_path, {("A2W", 0): (4.0, 6.0, 90.0), ("W2A", 0): (5.0, 7.0, 94.0)})
    stem = tmp_path / "speedup"
    out = subprocess.run([sys.executable, "benchmarks/speedup_summary.py", "--latency",
                          str(tmp_path / "latency_ratio_*_1thread.json"), "--out", str(stem)],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    fp, q = json.loads(stem.with_suffix(".json").read_text())["summary"]
    assert fp["artifact"] == "kd / ort-fp32" and fp["speedup_mean"] == pytest.approx(4.5) and fp["delta_pt"] == 0
    assert q["speedup_mean"] == pytest.approx(6.5) and q["delta_pt"] == pytest.approx(-3.0)
    assert q["vs_fp32_bs32_mean"] == pytest.approx(1.5) and q["vs_fp32_bs1_mean"] == pytest.approx((1.5 + 1.4) / 2)
    bad = subprocess.run([sys.executable, "benchmarks/speedup_summary.py", "--latency", "nope.json", "--out",
                          str(stem)], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "nope.json" in bad.stderr and bad.stderr.count("\n") == 1


def test_speedup_summary_reads_moved_runs_and_gives_each_seed_of_a_task_a_column(tmp_path):
    """Timed in one tree, read from another (a study's committed runs/): ``--runs`` finds each file's
    ``<task>/<run>/seed<k>`` tail there; two seeds of one task are two columns, averaged."""
    timed = tmp_path / "timed"
    docs = write_latency_runs(timed, {("A2W", 0): (4.0, 6.0, 90.0), ("A2W", 1): (6.0, 8.0, 94.0)})
    (timed / "A2W").rename(tmp_path / "A2W")  # the runs moved; the latency JSONs keep the old paths
    stem = tmp_path / "speedup"
    out = subprocess.run([sys.executable, "benchmarks/speedup_summary.py", "--latency", *map(str, docs),
                          "--out", str(stem), "--runs", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    fp, q = json.loads(stem.with_suffix(".json").read_text())["summary"]
    assert fp["tasks"] == ["A2W s0", "A2W s1"] and fp["speedup_mean"] == pytest.approx(5.0)
    assert q["acc_mean"] == pytest.approx(92.0) and q["delta_pt"] == pytest.approx(-3.0)  # read from the moved runs
    assert "A2W s0 ×" in stem.with_suffix(".md").read_text() and "--runs" in stem.with_suffix(".md").read_text()
    bad = subprocess.run([sys.executable, "benchmarks/speedup_summary.py", "--latency", *map(str, docs),
                          "--out", str(stem), "--runs", str(tmp_path / "nope")],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "nope" in bad.stderr and bad.stderr.count("\n") == 1
