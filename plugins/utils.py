"""Small shared helpers: one-line user errors, atomic writes, seeding, machine description."""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional


class UserError(Exception):
    """Bad input from the user: printed as one line, exit code 2, never a traceback."""


def fail(msg: str) -> None:
    raise UserError(msg)


def resolve_device(device: str, amp: str = "none") -> str:
    """``--device``: ``auto`` is ``cuda`` when a GPU is visible, else ``cpu``; a GPU asked for and absent, or fp16
    AMP on a CPU, is a one-line error rather than a crash mid-run."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not (device == "cpu" or device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        fail(f"--device '{device}': expected cpu, cuda, cuda:N or auto")
    if device.startswith("cuda") and not torch.cuda.is_available():
        fail(f"--device {device}: no CUDA GPU is visible to torch {torch.__version__}")
    if amp == "fp16" and not device.startswith("cuda"):
        fail("--amp fp16 needs a CUDA GPU (its GradScaler is for CUDA); on a CPU use --amp bf16")
    return device


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line and exit 2 (no usage dump): raises UserError for run_cli."""

    def error(self, message: str):  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def run_cli(main, argv=None) -> int:
    """Run `main(argv)` turning UserError into a one-line message and exit code 2."""
    try:
        main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: checkpoints written so far are intact; rerun with --resume", file=sys.stderr)
        return 130
    return 0


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``path`` whole or not at all: a temporary file beside it, fsynced, then renamed over it. Temporaries
    left by a killed earlier write of the same file are removed, those of a live process (two grid stages writing
    one shared split list) are not; the file gets the usual umask permissions (mkstemp's are 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        writer = stale.name[len(path.name) + 2:].split(".")[0]
        if not (writer.isdigit() and _alive(int(writer))):
            stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Strict JSON: a non-finite float (a validator on one image, say) is written as null, never as NaN."""
    atomic_write_text(path, json.dumps(_finite(obj), indent=2, sort_keys=False, default=_json_default,
                                       allow_nan=False) + "\n")


def _finite(o: Any) -> Any:
    import math

    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return _finite(float(o))
    if isinstance(o, np.ndarray):
        return _finite(o.tolist())
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """What every result must name: CPU/GPU, threads and library versions."""
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    for mod in ("torchvision", "timm", "onnxruntime", "onnx", "sklearn", "numpy"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - optional packages
            pass
    return info


def machine_label(info: dict[str, Any] | None = None) -> str:
    info = info or machine_info()
    dev = info.get("gpu") or f"{info['cpu']} ({info['torch_threads']} threads)"
    return f"{dev}, torch {info['torch']}"
