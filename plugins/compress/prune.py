"""Structured channel pruning with torch-pruning's DependencyGraph (through ``tp.pruner.MetaPruner``).

The dependency graph keeps coupled layers consistent: a pruned expansion channel also leaves its depthwise
conv, its BatchNorm, the SE squeeze/excite convs and the SE multiply; pruned pre-logits / bottleneck units
leave the following Linear / BatchNorm1d. Only the classifier head keeps its outputs (the classes).
The result is a real, smaller ``nn.Module``; :mod:`liteda.compress` saves its shapes so it reloads.
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..utils import fail
from .base import Technique

IMPORTANCES = ("magnitude", "taylor")


def build_importance(kind: str):
    """L2 filter magnitude (Li et al., 2017) or first-order Taylor |w * dL/dw| (Molchanov et al., 2019)."""
    import torch_pruning as tp

    if kind == "magnitude":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if kind == "taylor":
        return tp.importance.GroupTaylorImportance()
    fail(f"--prune-importance must be one of {', '.join(IMPORTANCES)}, got '{kind}'")


def check_ratio(ratio: float, flag: str = "--prune") -> None:
    if not 0.0 < ratio < 1.0:
        fail(f"{flag} must be in (0, 1), got {ratio}")


def build_pruner(model: nn.Module, input_size: int, ratio: float, importance: str = "magnitude", steps: int = 1,
                 global_pruning: bool = False, max_layer_ratio: float = 0.9, round_to: Optional[int] = None):
    """A MetaPruner over the whole classifier except its head. ``ratio`` is the fraction of channels removed
    per layer (uniform) or over the network (``global_pruning``, capped at ``max_layer_ratio`` per layer so
    that no layer disappears)."""
    import torch_pruning as tp

    check_ratio(ratio)
    if steps < 1:
        fail(f"--prune-steps must be >= 1, got {steps}")
    if any(type(m).__name__ == "ULSAM" for m in model.modules()):
        fail("--prune after --attention ulsam is not supported: its equal channel subspaces "
             "(slices) cannot be pruned consistently by torch-pruning")
    was_training = model.training
    model.eval()  # tracing must not update BatchNorm statistics; eval forward returns logits only
    example = torch.zeros(1, 3, input_size, input_size)
    try:
        pruner = tp.pruner.MetaPruner(
            model, example, importance=build_importance(importance), global_pruning=global_pruning,
            pruning_ratio=ratio, max_pruning_ratio=max_layer_ratio, iterative_steps=steps,
            ignored_layers=[model.head], round_to=round_to)
    except Exception as e:  # noqa: BLE001 - a structure torch-pruning cannot trace is a user-level limit
        fail(f"--prune: torch-pruning cannot trace this model: {str(e).splitlines()[0][:120]}")
    model.train(was_training)
    return pruner


def accumulate_taylor_gradients(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Gradients of source cross-entropy (labeled source only) for Taylor importance."""
    model.zero_grad(set_to_none=True)
    model.eval()  # fixed BN statistics: the importance should see the deployed network
    for x, y in batches:
        F.cross_entropy(model(x), y).backward()


def prune_model(model: nn.Module, input_size: int, ratio: float, importance: str = "magnitude", steps: int = 1,
                global_pruning: bool = False, grad_batches: Optional[Callable[[], Iterable]] = None,
                between_steps: Optional[Callable[[int], None]] = None, round_to: Optional[int] = None) -> dict:
    """Prune ``model`` in place in ``steps`` equal steps; ``between_steps(k)`` (recovery fine-tuning) runs after
    each step. ``grad_batches()`` yields labeled source batches for Taylor importance. Returns a summary."""
    if importance == "taylor" and grad_batches is None:
        fail("--prune-importance taylor needs labeled source batches for gradients")
    before = sum(p.numel() for p in model.parameters())
    pruner = build_pruner(model, input_size, ratio, importance, steps, global_pruning, round_to=round_to)
    for k in range(steps):
        if importance == "taylor":
            accumulate_taylor_gradients(model, grad_batches())
        pruner.step()
        model.zero_grad(set_to_none=True)
        sync_feature_dims(model)
        if between_steps is not None:
            between_steps(k)
    after = sum(p.numel() for p in model.parameters())
    return {"ratio": ratio, "importance": importance, "steps": steps, "global": global_pruning,
            "params_before": before, "params_after": after, "channels": channel_counts(model)}


def sync_feature_dims(model: nn.Module) -> None:
    """Keep the informational ``out_features`` / ``features_dim`` attributes true after pruning."""
    backbone = getattr(model, "backbone", None)
    pre = getattr(backbone, "prelogits", None)
    if isinstance(pre, nn.Sequential) and isinstance(pre[0], nn.Linear):
        backbone.out_features = pre[0].out_features
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        model.features_dim = head.in_features


def channel_counts(model: nn.Module) -> dict[str, int]:
    """Output channels / features of every conv and Linear (the pruned architecture in one table)."""
    out: dict[str, int] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            out[name] = m.out_channels
        elif isinstance(m, nn.Linear):
            out[name] = m.out_features
    return out


class Prune(Technique):
    """Structured channel pruning (torch-pruning's dependency graph), fine-tuned between iterative steps."""

    name = "prune"
    test_args = ("--prune", "0.3")

    @staticmethod
    def add_args(group) -> None:
        group.add_argument("--prune", type=float, default=None, help="fraction of channels to remove, in (0, 1)")
        group.add_argument("--prune-importance", default="magnitude", help=f"{' | '.join(IMPORTANCES)}")
        group.add_argument("--prune-steps", type=int, default=1, help="iterative pruning: N steps, fine-tune between")
        group.add_argument("--prune-global", action="store_true", help="one global ranking instead of a uniform ratio")
        group.add_argument("--prune-round-to", type=int, default=None, help="keep channel counts multiples of this")

    @staticmethod
    def active(args) -> bool:
        return args.prune is not None

    @staticmethod
    def check(args) -> None:
        if args.prune is not None:
            check_ratio(args.prune, "--prune")
        if args.prune_importance not in IMPORTANCES:
            fail(f"--prune-importance must be one of {', '.join(IMPORTANCES)}, got '{args.prune_importance}'")
        if args.prune_steps < 1:
            fail(f"--prune-steps must be >= 1, got {args.prune_steps}")
        if args.prune is not None and getattr(args, "attention", None) == "ulsam":
            fail("--prune after --attention ulsam is not supported (ULSAM's equal channel subspaces)")

    @staticmethod
    def apply(ctx, args) -> None:
        steps_hist: list[dict] = []
        grad_batches = lambda: [next(iter(ctx.data.labeled)) for _ in range(2)]  # noqa: E731 - source CE only
        summary = prune_model(ctx.student, ctx.input_size, args.prune, args.prune_importance, args.prune_steps,
                              args.prune_global, grad_batches, round_to=args.prune_round_to,
                              between_steps=lambda k: steps_hist.extend(ctx.recover(f"prune{k + 1}")))
        op = {"op": "prune", **{k: v for k, v in summary.items() if k != "channels"}}
        ctx.ops.append(op)
        ctx.log(op, None, steps_hist)
