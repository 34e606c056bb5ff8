"""Data-parallel training across processes started by ``torchrun``: the process group, which process writes, the
sharded resumable sampler and the collectives the engine and the batch-statistic losses use.

    torchrun --standalone --nproc_per_node 2 -m liteda adapt ROOT -d Digits -s S -t M -m mcc
    torchrun --nnodes 2 --node-rank K --rdzv-endpoint HOST:PORT --nproc_per_node 8 -m liteda train ...

Without torchrun, or with one process, every helper here is the identity: a single-process run is what it always
was. With N processes (docs/distributed.md):
- ``--batch-size`` is the global batch: each process draws B/N labeled (and B/N unlabeled) images a step, so the
  iterations per epoch, the learning rate and every batch-statistic loss are those of the 1-process run;
- rank 0 alone writes (lock, image lists, checkpoint, model, results, record) and evaluates;
- a checkpoint holds the data order in global terms and resumes on any number of processes, 1 included.
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator, Optional, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from .datasets import ResumableSampler
from .settings import torchrun_world
from .utils import UserError, fail

T = TypeVar("T")


# ----------------------------------------------------------------------------- the process group
def init(device: str) -> str:
    """Join the process group torchrun describes (nccl on CUDA, gloo on CPU) when it started more than one
    process; returns this process's device (``cuda`` becomes ``cuda:LOCAL_RANK``)."""
    rank, local_rank, world = torchrun_world()
    if world <= 1 or is_distributed():
        return device
    if device.startswith("cuda"):
        if device != "cuda":
            fail(f"--device {device}: under torchrun each process takes the GPU of its local rank; pass --device cuda")
        if local_rank >= torch.cuda.device_count():
            fail(f"local rank {local_rank} has no GPU: {torch.cuda.device_count()} are visible on this node")
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", rank=rank, world_size=world)
    return device


def launched_rank() -> int:
    """This process's rank among those torchrun started (0 without torchrun), with or without a process group."""
    return torchrun_world()[0]


def teardown() -> None:
    if is_distributed():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """The process that writes and evaluates (rank 0; the only one without torchrun)."""
    return rank() == 0


def check_batch_size(batch_size: int) -> None:
    if batch_size % world_size():
        fail(f"-b {batch_size} is the global batch and must split evenly over the {world_size()} processes")


def run_info(batch_size: int) -> dict:
    """What results.json records about the processes (nothing for a single-process run)."""
    if not is_distributed():
        return {}
    return {"distributed": {"processes": world_size(), "backend": dist.get_backend(),
                            "batch_per_process": batch_size // world_size()}}


# ----------------------------------------------------------------------------- who does what
def on_main(fn: Callable[[], T]) -> T:
    """``fn()`` on rank 0 alone; every process gets its result, or raises its one-line error."""
    if not is_distributed():
        return fn()
    box: list[Any] = [None]
    if is_main():
        try:
            box = [("result", fn())]
        except UserError as e:
            box = [("error", str(e))]
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        fail(value)
    return value


def main_first(fn: Callable[[], T]) -> T:
    """``fn()`` on rank 0, then on the other processes: what rank 0 writes on the way (image lists, the decoded
    cache, downloaded weights) the others read instead of writing it at the same time. A one-line error on
    rank 0 is raised on every process."""
    if not is_distributed():
        return fn()
    out: Optional[T] = None

    def first() -> None:
        nonlocal out
        out = fn()

    on_main(first)
    return out if is_main() else fn()


def gather_objects(obj: T) -> list[T]:
    """Every process's ``obj`` in rank order (``[obj]`` in a single process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def mean_over_processes(values: dict[str, float]) -> dict[str, float]:
    """Per-key mean over the processes (each averaged the same number of equal steps)."""
    if not is_distributed():
        return values
    every = gather_objects(values)
    keys = dict.fromkeys(k for d in every for k in d)
    return {k: sum(d[k] for d in every if k in d) / sum(k in d for d in every) for k in keys}


def sum_over_processes(value: int) -> int:
    return value if not is_distributed() else sum(gather_objects(value))


def split_rng() -> None:
    """Give each process its own augmentation / dropout stream, derived from the stream they share (same seed,
    same run), so that N processes do not draw the same crops."""
    if is_distributed():
        base = int(torch.randint(2 ** 62, (1,)))
        torch.manual_seed(base + rank())


# ----------------------------------------------------------------------------- model and losses
def data_parallel(module: nn.Module, device: str) -> nn.Module:
    """``module`` in DistributedDataParallel (gradients averaged over the processes, rank 0's buffers broadcast
    before each forward); ``module`` itself in a single process."""
    if not is_distributed():
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.device(device).index] if device.startswith("cuda") else None
    return DistributedDataParallel(module, device_ids=ids)


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        n = torch.tensor([len(x)], device=x.device)
        sizes = [torch.zeros_like(n) for _ in range(world_size())]
        dist.all_gather(sizes, n)
        ctx.sizes, ctx.rank = [int(s) for s in sizes], rank()
        top = max(ctx.sizes)
        padded = x.new_zeros((top, *x.shape[1:]))
        padded[:len(x)] = x
        parts = [torch.empty_like(padded) for _ in ctx.sizes]
        dist.all_gather(parts, padded)
        return torch.cat([p[:s] for p, s in zip(parts, ctx.sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        # every process computed the same loss from every row: a row's gradient is the sum over processes (DDP
        # then averages the parameters' gradients, which gives the 1-process gradient of the global batch loss)
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = sum(ctx.sizes[:ctx.rank])
        return grad[start:start + ctx.sizes[ctx.rank]]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """The rows of ``x`` from every process, in rank order, with gradients flowing back to each process's own
    rows: a batch-statistic loss over the result sees the global batch. ``x`` itself in a single process."""
    return _GatherRows.apply(x) if is_distributed() else x


# ----------------------------------------------------------------------------- data
class ShardedResumableSampler(ResumableSampler):
    """Process ``rank``'s share of each pass of a :class:`ResumableSampler`: every process draws the same
    permutation (same seed), keeps the positions the 1-process loader would use (the last partial batch dropped
    when there is a full one) and takes every ``world_size``-th of them from its rank on. Batch ``k`` of all
    shards together is then batch ``k`` of the 1-process run.

    The pass state (permutation, generator, batches consumed) is the single-process one: a checkpoint written
    with N processes resumes with any number, 1 included.
    """

    def __init__(self, n: int, shuffle: bool, seed: int, global_batch: int, rank: int, world_size: int):
        super().__init__(n, shuffle, seed)
        if n < world_size:
            fail(f"{n} training images cannot be shared by {world_size} processes")
        self.rank, self.world_size = rank, world_size
        self.used = n - n % global_batch if n >= global_batch else n
        self._from = 0  # the global position the next pass starts at

    def __len__(self) -> int:
        return len(range(self.rank, self.used, self.world_size))

    def __iter__(self) -> Iterator[int]:
        start, self._from = self._from, 0
        remaining = itertools.islice(super().__iter__(), max(0, self.used - start))
        # start is a whole number of global batches, hence of world_size: the stride keeps this rank's positions
        return itertools.islice(remaining, self.rank, None, self.world_size)

    def begin_pass(self) -> dict:
        self._from = 0
        return super().begin_pass()

    def resume_pass(self, state: dict, start: int) -> None:
        """``start``: this process's position (batches consumed x batch per process), i.e. the global position
        divided by the number of processes."""
        self._from = start * self.world_size
        super().resume_pass(state, self._from)


def training_sampler(n: int, seed: int, batch_size: int) -> tuple[ResumableSampler, int, bool]:
    """A training loader's sampler, its batch per process and its drop_last, for ``n`` items and the global
    ``batch_size``; in a single process exactly the loader it has always been."""
    if not is_distributed():
        return ResumableSampler(n, True, seed), batch_size, n >= batch_size
    # the shard already holds whole batches only: the loader drops nothing
    return ShardedResumableSampler(n, True, seed, batch_size, rank(), world_size()), batch_size // world_size(), False
