"""Where ONNX Runtime spends a bs1 call: kernel time per operator type (convolutions split into stem / 1x1 /
depthwise kxk / other), from ORT's own profiler, for each ONNX file given.

    python benchmarks/ort_profile.py RUN/deploy/model_fp32.onnx RUN/deploy/model_int8.onnx --out results/ort_profile

One intra-op thread, ``--runs`` profiled calls after 10 warm-up calls, random input at the file's input size.
Writes <out>.{json,md}.
"""
from __future__ import annotations

import collections
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from liteda.utils import OneLineParser, atomic_write_text, fail, machine_label, run_cli, write_json

CONV_OPS = ("Conv", "QLinearConv", "FusedConv", "NchwcConv")


def conv_kind(node, first_conv: str) -> str:
    attrs = {a.name: a for a in node.attribute}
    if node.name == first_conv:
        return "stem"
    k = list(attrs["kernel_shape"].ints) if "kernel_shape" in attrs else []
    if "group" in attrs and attrs["group"].i > 1:
        return f"depthwise {'x'.join(map(str, k))}"
    return "1x1" if k == [1, 1] else f"dense {'x'.join(map(str, k))}"


def profile(path: str, runs: int) -> dict:
    import onnx
    import onnxruntime as ort

    from liteda.deploy.onnx import read_metadata

    size = int(read_metadata(path).get("crop_size", 224))
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "prof")
        so.optimized_model_filepath = os.path.join(tmp, "opt.onnx")  # the graph ORT runs (names in the profile)
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
        name = sess.get_inputs()[0].name
        for _ in range(10 + runs):
            sess.run(None, {name: x})
        events = json.load(open(sess.end_profiling()))
        graph = onnx.load(so.optimized_model_filepath).graph
    nodes = {n.name: n for n in graph.node}
    first_conv = next((n.name for n in graph.node if n.op_type in CONV_OPS), "")
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    t0 = starts[10] if len(starts) > 10 else 0  # the 10 warm-up calls are not counted
    calls = max(1, sum(1 for t in starts if t >= t0))
    per_op: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or e["ts"] < t0:
            continue
        op, node = e["args"]["op_name"], nodes.get(e["name"][: -len("_kernel_time")])
        key = f"{op} ({conv_kind(node, first_conv)})" if op in CONV_OPS and node is not None else op
        per_op[key] += e["dur"] / 1e3 / calls
    return {"file": path, "input_px": size, "calls": calls, "ms_per_call": dict(per_op.most_common()),
            "total_kernel_ms": float(sum(per_op.values()))}


def main(argv: list[str]) -> None:
    p = OneLineParser(prog="ort_profile.py", description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", help="ONNX files")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--out", required=True, help="write <OUT>.{json,md}")
    a = p.parse_args(argv)
    for f in a.files:
        if not Path(f).is_file():
            fail(f"'{f}' does not exist")
    docs = [profile(f, a.runs) for f in a.files]
    command = "python benchmarks/ort_profile.py " + " ".join(argv)
    lines = ["# ONNX Runtime kernel time per bs1 call (ms), 1 thread", "", f"Machine: {machine_label()}. "
             f"Command: `{command}`", ""]
    for d in docs:
        lines += [f"## {d['file']} ({d['input_px']} px): {d['total_kernel_ms']:.2f} ms of kernels per call", "",
                  "| operator | ms per call |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in d["ms_per_call"].items()] + [""]
    write_json(f"{a.out}.json", {"schema": "liteda.ort_profile/1", "command": command, "profiles": docs})
    atomic_write_text(f"{a.out}.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(run_cli(lambda _argv: main(sys.argv[1:])))
