"""Run one pipeline stage for make: progress line with elapsed time and an ETA over the whole grid.

    python -m liteda.stage --name "A2W dann seed 0" --log runs/OfficeCaltech/.stages.jsonl --total 24 -- CMD...

Stage durations are appended to the log (one JSON line each, a single small write, safe under ``make -j``);
the ETA is the mean finished-stage duration times the stages still to run.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path


def _fmt(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--total", type=int, default=0)
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    log = Path(a.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"[stage] {a.name}: start", flush=True)
    t0 = time.time()
    rc = subprocess.call(cmd)
    dt = time.time() - t0
    if rc != 0:
        print(f"[stage] {a.name}: FAILED (exit {rc}) after {_fmt(dt)}; rerun make to resume", flush=True)
        return rc
    with open(log, "a") as f:  # O_APPEND: one short line per write is atomic between processes
        f.write(json.dumps({"name": a.name, "seconds": dt, "end": time.time()}) + "\n")
    done = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    names = {d["name"] for d in done}
    mean = sum(d["seconds"] for d in done) / len(done)
    first = min(d["end"] - d["seconds"] for d in done)
    left = max(0, a.total - len(names)) if a.total else 0
    jobs = re.search(r"(?:^|\s)-j\s*(\d+)", os.environ.get("MAKEFLAGS", ""))  # make -jN runs N stages at once
    eta = f", ETA {_fmt(left * mean / (int(jobs.group(1)) if jobs else 1))}" if a.total else ""
    print(f"[stage] {a.name}: done in {_fmt(dt)} | {len(names)}/{a.total or '?'} stages | "
          f"elapsed {_fmt(time.time() - first)}{eta}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
