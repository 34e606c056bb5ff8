"""Data parallelism under torchrun (CPU, gloo, two processes): the sharded sampler, the gradients of the engine's
step with the batch-statistic losses gathered, and a whole run that only rank 0 writes and that resumes in one
process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch.utils.data import DataLoader

from liteda.datasets import ForeverDataIterator, ResumableSampler
from liteda.distributed import ShardedResumableSampler
from liteda.runner import main

from conftest import TINY


def torchrun(args: list[str], cwd, timeout: int = 240) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 ARGS``: two CPU processes, one thread each."""
    env = {**os.environ, "LITEDA_THREADS": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args],
                       cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r


def shard_iterators(n: int, batch: int, world: int, seed: int = 3) -> list[ForeverDataIterator]:
    loaders = [DataLoader(range(n), batch_size=batch // world,
                          sampler=ShardedResumableSampler(n, True, seed, batch, r, world)) for r in range(world)]
    return [ForeverDataIterator(loader) for loader in loaders]


def one_process_iterator(n: int, batch: int, seed: int = 3) -> ForeverDataIterator:
    return ForeverDataIterator(DataLoader(range(n), batch_size=batch, sampler=ResumableSampler(n, True, seed),
                                          drop_last=n >= batch))


@pytest.mark.parametrize("n, batch, world", [(23, 6, 2), (23, 6, 3), (5, 8, 2), (40, 8, 4)])
def test_shards_are_disjoint_and_make_up_the_one_process_batches(n, batch, world):
    shards, whole = shard_iterators(n, batch, world), one_process_iterator(n, batch)
    for _ in range(3 * len(whole)):  # three passes
        parts = [next(it).tolist() for it in shards]
        seen = [i for p in parts for i in p]
        assert len(seen) == len(set(seen))  # disjoint
        assert sorted(seen) == sorted(next(whole).tolist())  # together: the 1-process batch


def test_shards_resume_exactly_on_the_same_and_on_another_number_of_processes():
    n, batch, world, k = 23, 6, 2, 5  # 3 batches a pass: the state is saved inside the second pass
    shards = shard_iterators(n, batch, world)
    for _ in range(k):
        for it in shards:
            next(it)
    states = [it.state_dict() for it in shards]
    assert all(torch.equal(s["perm"], states[0]["perm"]) and s["consumed"] == states[0]["consumed"] for s in states)
    expected = [[next(it).tolist() for it in shards] for _ in range(4)]  # into the third pass
    resumed = shard_iterators(n, batch, world)
    for it, s in zip(resumed, states):
        it.load_state_dict(s)
    assert [[next(it).tolist() for it in resumed] for _ in range(4)] == expected
    single = one_process_iterator(n, batch)
    single.load_state_dict(states[0])  # a 2-process checkpoint, resumed by one process
    assert [sorted(next(single).tolist()) for _ in range(4)] == [sorted(a + b) for a, b in expected]


GRADIENT_CHECK = textwrap.dedent("""
    import argparse, copy
    import torch
    from torch import nn
    from liteda import distributed
    from liteda.adaptation import get_method
    from liteda.engine import StepLoss

    distributed.init("cpu")
    rank, world = distributed.rank(), distributed.world_size()
    B, D, C = 8, 5, 3
    torch.manual_seed(0)
    x_s, x_t, y_s = torch.randn(B, D), torch.randn(B, D), torch.randint(0, C, (B,))

    class Tiny(nn.Module):  # no BatchNorm, no dropout: the 1-process gradient is defined exactly
        features_dim = 4

        def __init__(self):
            super().__init__()
            self.f, self.h = nn.Linear(D, 4), nn.Linear(4, C)

        def forward(self, x):
            f = self.f(x)
            return self.h(f), f

    def grads(step_loss, xs, ys, xt):
        loss = step_loss(xs, ys, xt, None, 0, 10)[0]
        loss.backward()
        return [p.grad for p in step_loss.parameters() if p.requires_grad]

    for name in ("dann", "dan", "jan", "mcc", "coral"):
        cls = get_method(name)
        parser = argparse.ArgumentParser()
        cls.add_args(parser)
        torch.manual_seed(1)
        model = Tiny()
        method = cls(model, C, parser.parse_args([]), 10)
        method.train(name != "dann")  # DANN: the discriminator's BatchNorm on running statistics
        reference = StepLoss(*copy.deepcopy((model, method)), 1.0)
        share = slice(rank * B // world, (rank + 1) * B // world)
        ddp = grads(distributed.data_parallel(StepLoss(model, method, 1.0), "cpu"), x_s[share], y_s[share], x_t[share])
        real, distributed.is_distributed = distributed.is_distributed, lambda: False  # one process, whole batch
        one = grads(reference, x_s, y_s, x_t)
        distributed.is_distributed = real
        assert len(ddp) == len(one) and all(torch.allclose(a, b, atol=1e-6) for a, b in zip(ddp, one)), name
    distributed.teardown()
    print("gradients equal", rank)
""")


def test_two_processes_give_the_one_process_gradient_of_the_global_batch(tmp_path):
    """DDP averages per-process gradients; the batch-statistic losses see the gathered global batch: together,
    the gradient of every parameter (model and discriminator) is the 1-process gradient of the whole batch."""
    (tmp_path / "check.py").write_text(GRADIENT_CHECK)
    r = torchrun(["check.py"], tmp_path)
    assert r.stdout.count("gradients equal") == 2


def test_a_two_process_run_writes_once_and_resumes_in_one_process(tiny_dataset, tmp_path):
    flags = [str(tiny_dataset), "-d", "Custom", "-s", "src", "-t", "tgt", *TINY, "-i", "2",
             "--cache-dir", str(tmp_path / "cache")]
    # torchrun's own parser reads --log as an abbreviation of its options: the run folder comes from --runs-root
    r = torchrun(["-m", "liteda", "adapt", "-m", "dann", *flags, "--epochs", "1", "--runs-root", "runs2"], tmp_path)
    run2 = tmp_path / "runs2" / "Custom" / "src2tgt" / "dann" / "seed0"
    assert r.stdout.count("epoch 1/1") == 1 and r.stdout.count("target-test acc") == 1  # rank 0 alone reports
    one = main("dann", "adapt", [*flags, "--epochs", "1", "--runs-root", str(tmp_path / "runs1")])
    run1 = tmp_path / "runs1" / "Custom" / "src2tgt" / "dann" / "seed0"
    assert sorted(p.name for p in run2.iterdir()) == sorted(p.name for p in run1.iterdir())  # no stray writes
    two = json.loads((run2 / "results.json").read_text())
    assert two.pop("distributed") == {"processes": 2, "backend": "gloo", "batch_per_process": 4}
    assert two.keys() == one.keys()
    assert two["config"]["iters_per_epoch"] == one["config"]["iters_per_epoch"] == 2
    ck = torch.load(run2 / "checkpoint.pt", weights_only=True)
    assert len(ck["rng_per_process"]) == 2 and ck["iterators"][0]["consumed"] == 2  # global batches
    argv2 = [*flags, "--runs-root", str(tmp_path / "runs2")]
    # rank 0 scored the whole target set: one process scores the saved weights the same
    main("dann", "adapt", [*argv2, "--epochs", "1", "--phase", "test"])
    again = json.loads((run2 / "results.json").read_text())
    for split in ("target_test", "target_all", "source_test"):
        assert again[split] == two[split], split
    resumed = main("dann", "adapt", [*argv2, "--epochs", "2", "--resume"])
    assert resumed["resumed_from_epoch"] == 1 and len((run2 / "history.csv").read_text().splitlines()) == 3
    assert "distributed" not in resumed


def test_the_grid_starts_training_stages_under_torchrun_and_the_others_in_one_process(tmp_path, capsys):
    from liteda.grid import main as grid_main

    grid_main(["ROOT", "-d", "OfficeCaltech", "--tasks", "A2W", "--runs", str(tmp_path), "--nproc", "2", "-n"])
    plan = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    torchrun = "torchrun --standalone --nproc_per_node 2 -m liteda "
    trained = [k for k, cmd in plan.items() if cmd.startswith(torchrun)]
    assert sorted(" ".join(k.split()[2:]).rsplit(" seed", 1)[0] for k in trained) == \
        ["distill", "mcc", "oracle", "source-only", "teacher mcc-mobilenet_v3_large"]
    assert all(cmd.startswith("liteda ") for k, cmd in plan.items() if k not in trained)  # compress, bench, analysis
