"""One writer per run folder: an advisory lock held for the life of the process that writes the folder.

A second command on the same folder (a duplicate ``--resume``, a grid launched twice) fails at once with the
holder's process id instead of training the same epochs twice into one checkpoint.
"""
from __future__ import annotations

import atexit
import os
from pathlib import Path

from .utils import fail

_held: dict[str, int] = {}  # run folder -> open file descriptor (kept open: closing it releases the lock)


def lock_run(run_dir: str | os.PathLike) -> None:
    """Take the run folder's lock for this process (idempotent); one-line error if another process holds it."""
    import fcntl

    run_dir = Path(run_dir)
    key = str(run_dir.resolve())
    if key in _held:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        fail(f"run folder '{run_dir}' is in use by another LiteDA process (pid {holder}); wait for it to finish "
             f"or use another --log")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[key] = fd


def unlock_run(run_dir: str | os.PathLike) -> None:
    fd = _held.pop(str(Path(run_dir).resolve()), None)
    if fd is not None:
        os.close(fd)


@atexit.register
def _release_all() -> None:
    for fd in _held.values():
        os.close(fd)
    _held.clear()
