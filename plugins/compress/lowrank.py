"""Low-rank factorisation: truncated SVD of Linear layers and 1x1 convolutions, Tucker-2 / CP of kxk convs.

- ``W (m x n) ~ B (m x r) @ A (r x n)``: one layer becomes two; it pays when ``r * (m + n) < m * n``.
- Tucker-2 (Kim et al., 2016): ``1x1 (C_in -> R_in) -> kxk (R_in -> R_out) -> 1x1 (R_out -> C_out)``.
- CP (Lebedev et al., 2015): ``1x1 (C_in -> R) -> depthwise kx1 -> depthwise 1xk -> 1x1 (R -> C_out)``.

Depthwise convs (``groups == in_channels``) are excluded: each filter sees one channel, so the weight has no
input-channel mode to factor and only k*k (9 or 25) numbers per channel; any factorisation adds parameters.
Ranks come from an energy threshold (fraction of the squared singular values kept) or a parameter ratio, per
layer (``uniform``) or as one budget over all the selected layers (``global``: the energy threshold shared by
every layer that fits the budget, so each layer keeps the same fraction of its spectrum).

Whitening (``diag`` / ``full``) makes the SVD data-aware: it truncates ``W S`` instead of ``W``, where ``S`` is
the square root of the layer's input second moment on source-train and unlabeled target-train images (its
diagonal, as ASVD, Yuan et al. 2023; or its Cholesky factor, as SVD-LLM, Wang et al. 2024), so the discarded part
is the one that moves the layer's outputs least on the domains' inputs; ``A`` is then mapped back by ``S^-1``.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn
from torchvision.ops.misc import SqueezeExcitation

from ..utils import fail
from .base import Technique
from .layer_inputs import mean_input_statistic

KXK_METHODS = ("tucker2", "cp", "none")
LAYER_SETS = ("all", "linear", "se", "linear+se", "kxk")
ALLOCATIONS = ("uniform", "global")
WHITENINGS = ("none", "diag", "full")


# ----------------------------------------------------------------------------- rank selection
def rank_for_energy(singular_values: torch.Tensor, energy: float) -> int:
    """Smallest r whose leading singular values keep ``energy`` of the squared spectrum."""
    e = singular_values.double().pow(2)
    cum = torch.cumsum(e, 0) / e.sum().clamp_min(1e-30)
    return int(min(len(e), int((cum < energy).sum().item()) + 1))


def rank_for_ratio(m: int, n: int, ratio: float) -> int:
    """Rank whose two factors hold ``ratio`` of the dense layer's weights: r (m + n) = ratio * m * n."""
    return max(1, int(ratio * m * n / (m + n)))


def choose_rank(weight2d: torch.Tensor, energy: Optional[float], ratio: Optional[float]) -> int:
    m, n = weight2d.shape
    if ratio is not None:
        return min(m, n, rank_for_ratio(m, n, ratio))
    s = torch.linalg.svdvals(weight2d.double())
    return rank_for_energy(s, energy)


def check_energy_ratio(energy: Optional[float], ratio: Optional[float]) -> None:
    if (energy is None) == (ratio is None):
        fail("low-rank: give exactly one of --lowrank-energy or --lowrank-ratio")
    value, flag = (energy, "--lowrank-energy") if energy is not None else (ratio, "--lowrank-ratio")
    if not 0.0 < value <= 1.0:
        fail(f"{flag} must be in (0, 1], got {value}")


# ----------------------------------------------------------------------------- shells (structure only)
def linear_shell(layer: nn.Linear, rank: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(layer.in_features, rank, bias=False),
                         nn.Linear(rank, layer.out_features, bias=layer.bias is not None))


def pointwise_shell(conv: nn.Conv2d, rank: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(conv.in_channels, rank, 1, stride=conv.stride, bias=False),
                         nn.Conv2d(rank, conv.out_channels, 1, bias=conv.bias is not None))


def tucker2_shell(conv: nn.Conv2d, ranks: tuple[int, int]) -> nn.Sequential:
    r_out, r_in = ranks
    return nn.Sequential(
        nn.Conv2d(conv.in_channels, r_in, 1, bias=False),
        nn.Conv2d(r_in, r_out, conv.kernel_size, stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
                  bias=False),
        nn.Conv2d(r_out, conv.out_channels, 1, bias=conv.bias is not None))


def cp_shell(conv: nn.Conv2d, rank: int) -> nn.Sequential:
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    return nn.Sequential(
        nn.Conv2d(conv.in_channels, rank, 1, bias=False),
        nn.Conv2d(rank, rank, (kh, 1), stride=(sh, 1), padding=(ph, 0), dilation=(dh, 1), groups=rank, bias=False),
        nn.Conv2d(rank, rank, (1, kw), stride=(1, sw), padding=(0, pw), dilation=(1, dw), groups=rank, bias=False),
        nn.Conv2d(rank, conv.out_channels, 1, bias=conv.bias is not None))


def factorized_shell(layer: nn.Module, spec: dict) -> nn.Sequential:
    kind, ranks = spec["kind"], spec["ranks"]
    if kind == "svd":
        return linear_shell(layer, ranks[0]) if isinstance(layer, nn.Linear) else pointwise_shell(layer, ranks[0])
    if kind == "tucker2":
        return tucker2_shell(layer, (ranks[0], ranks[1]))
    if kind == "cp":
        return cp_shell(layer, ranks[0])
    fail(f"unknown low-rank kind '{kind}'")
    raise AssertionError


# ----------------------------------------------------------------------------- SVD
def svd_factors(weight2d: torch.Tensor, rank: int,
                whiten: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``W ~ B @ A`` with the singular values split evenly (balanced factor scales for fine-tuning).
    ``whiten``: an invertible ``S`` (n x n, from :func:`whitening_factor`); the SVD is then of ``W S``."""
    w = weight2d.double()
    if whiten is not None:
        w = w @ whiten
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    # each singular pair is defined up to sign, and which sign LAPACK returns is not part of its contract (a
    # library build or thread count may change it): fix it (the largest entry of each left vector positive,
    # sklearn's svd_flip rule) so that the factors, and their INT8 rounding, do not depend on it
    u, vh = u[:, :rank], vh[:rank]
    sign = torch.sign(u.gather(0, u.abs().argmax(0, keepdim=True)))
    u, vh = u * sign, vh * sign.T
    root = s[:rank].sqrt()
    a = root[:, None] * vh
    if whiten is not None:
        a = torch.linalg.solve(whiten, a, left=False)  # A S^-1: the factors act on the layer's real inputs
    return (u * root).float(), a.float()


# shrinkage of the input statistics towards their mean diagonal (see whitening_factor); chosen on held-out
# target-train agreement with the uncompressed model, a label-free criterion
WHITEN_DAMPING = 0.1


def whitening_factor(second_moment: torch.Tensor, kind: str, damping: float = WHITEN_DAMPING) -> Optional[torch.Tensor]:
    """``S`` with ``S S^T`` ~ the input second moment ``E[x x^T]`` (n x n): its diagonal's square root (``diag``)
    or its Cholesky factor (``full``), damped by ``damping`` x its mean diagonal (shrinkage: inputs the statistics
    barely excite, dead channels or more dimensions than images, stay invertible and are not over-fitted);
    ``none``: no whitening."""
    if kind == "none":
        return None
    c = second_moment.double()
    eps = damping * c.diagonal().mean().clamp_min(1e-12)
    if kind == "diag":
        return torch.diag((c.diagonal() + eps).sqrt())
    return torch.linalg.cholesky(c + eps * torch.eye(len(c), dtype=c.dtype))


def input_second_moments(model: nn.Module, names: list[str], batches) -> dict[str, torch.Tensor]:
    """``E[x x^T]`` of each named Linear / 1x1 conv's input over ``batches`` (unlabeled images; every spatial
    position of a conv input is one sample)."""
    def second_moment(x: torch.Tensor) -> tuple[torch.Tensor, int]:
        x = x.movedim(1, -1).reshape(-1, x.shape[1]) if x.dim() == 4 else x.reshape(-1, x.shape[-1])
        return x.T @ x, len(x)

    return mean_input_statistic(model, names, batches, second_moment)


def factorize_linear(layer: nn.Linear, rank: int, whiten: Optional[torch.Tensor] = None) -> nn.Sequential:
    """``Linear(n, m)`` -> ``Linear(n, r, bias=False)`` + ``Linear(r, m)``."""
    b, a = svd_factors(layer.weight.detach(), rank, whiten)
    first, second = linear_shell(layer, rank)
    with torch.no_grad():
        first.weight.copy_(a)
        second.weight.copy_(b)
        if layer.bias is not None:
            second.bias.copy_(layer.bias)
    return nn.Sequential(first, second)


def factorize_pointwise(conv: nn.Conv2d, rank: int, whiten: Optional[torch.Tensor] = None) -> nn.Sequential:
    """A 1x1 ``Conv2d`` as two 1x1 convs (the stride stays on the first)."""
    w = conv.weight.detach().flatten(1)
    b, a = svd_factors(w, rank, whiten)
    first, second = pointwise_shell(conv, rank)
    with torch.no_grad():
        first.weight.copy_(a[:, :, None, None])
        second.weight.copy_(b[:, :, None, None])
        if conv.bias is not None:
            second.bias.copy_(conv.bias)
    return nn.Sequential(first, second)


# ----------------------------------------------------------------------------- Tucker-2 / CP
def tucker2_ranks(conv: nn.Conv2d, energy: Optional[float], ratio: Optional[float]) -> tuple[int, int]:
    """(R_out, R_in) from the mode-0 / mode-1 unfoldings (HOSVD spectra)."""
    w = conv.weight.detach()
    c_out, c_in = w.shape[:2]
    if ratio is not None:  # same fraction of both modes
        f = ratio ** 0.5
        return max(1, round(f * c_out)), max(1, round(f * c_in))
    r_out = rank_for_energy(torch.linalg.svdvals(w.flatten(1).double()), energy)
    r_in = rank_for_energy(torch.linalg.svdvals(w.transpose(0, 1).flatten(1).double()), energy)
    return r_out, r_in


def tucker2_conv(conv: nn.Conv2d, ranks: tuple[int, int]) -> nn.Sequential:
    import tensorly as tl
    from tensorly.decomposition import partial_tucker

    tl.set_backend("pytorch")
    r_out, r_in = ranks
    (core, (u_out, u_in)), _ = partial_tucker(conv.weight.detach().double(), rank=[r_out, r_in], modes=[0, 1],
                                              init="svd")
    first, middle, last = tucker2_shell(conv, ranks)
    with torch.no_grad():
        first.weight.copy_(u_in.t()[:, :, None, None].float())
        middle.weight.copy_(core.float())
        last.weight.copy_(u_out[:, :, None, None].float())
        if conv.bias is not None:
            last.bias.copy_(conv.bias)
    return nn.Sequential(first, middle, last)


def cp_conv(conv: nn.Conv2d, rank: int) -> nn.Sequential:
    import tensorly as tl
    from tensorly.decomposition import parafac

    tl.set_backend("pytorch")
    cp = parafac(conv.weight.detach().double(), rank=rank, init="svd", n_iter_max=200)
    u_out, u_in, u_h, u_w = cp.factors
    first, vert, horiz, last = cp_shell(conv, rank)
    with torch.no_grad():
        first.weight.copy_(u_in.t()[:, :, None, None].float())
        vert.weight.copy_(u_h.t()[:, None, :, None].float())
        horiz.weight.copy_(u_w.t()[:, None, None, :].float())
        last.weight.copy_((u_out * cp.weights)[:, :, None, None].float())
        if conv.bias is not None:
            last.bias.copy_(conv.bias)
    return nn.Sequential(first, vert, horiz, last)


# ----------------------------------------------------------------------------- whole model
def is_depthwise(conv: nn.Conv2d) -> bool:
    return conv.groups > 1 and conv.groups == conv.in_channels


def se_convs(model: nn.Module) -> set[str]:
    """The 1x1 convs of squeeze-excite blocks: a quarter of MobileNetV3-Small's parameters but almost none of its
    MACs (they act on the pooled 1x1 map), so factorising them shrinks the file at no latency cost."""
    return {f"{name}.{child}" for name, m in model.named_modules() if isinstance(m, SqueezeExcitation)
            for child, c in m.named_children() if isinstance(c, nn.Conv2d)}


def layer_selection(model: nn.Module, layers: str) -> Callable[[str], bool]:
    """``--lowrank-layers``: all | linear (the Linears after the conv trunk) | se (the SE blocks' 1x1 convs) |
    linear+se | kxk (the dense kxk convs, where Tucker-2 / CP apply); the compute-heavy 1x1 convs of the trunk are
    left alone by every set but ``all``."""
    if layers not in LAYER_SETS:
        fail(f"--lowrank-layers must be one of {', '.join(LAYER_SETS)}, got '{layers}'")
    se = se_convs(model)
    kxk = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups == 1
           and m.weight[0, 0].numel() > 1}

    def in_trunk(name: str) -> bool:
        return name == "backbone.features" or name.startswith("backbone.features.")
    return {"all": lambda n: True, "linear": lambda n: not in_trunk(n), "se": lambda n: n in se,
            "linear+se": lambda n: not in_trunk(n) or n in se, "kxk": lambda n: n in kxk}[layers]


def lowrank_candidates(model: nn.Module, skip: tuple[str, ...] = ("head",),
                       select: Optional[Callable[[str], bool]] = None) -> dict[str, nn.Module]:
    """Linear layers, dense 1x1 convs and dense kxk convs (those ``select`` keeps); the head and depthwise convs
    are left alone."""
    out = {}
    for name, m in model.named_modules():
        if any(name == s or name.startswith(s + ".") for s in skip) or (select is not None and not select(name)):
            continue
        if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1):
            out[name] = m
    return out


def build_factorized(layer: nn.Module, spec: dict, whiten: Optional[torch.Tensor] = None) -> nn.Sequential:
    """The factorised replacement of ``layer`` for a plan entry; ``whiten`` applies to SVD entries."""
    kind, ranks = spec["kind"], spec["ranks"]
    if kind == "svd":
        if isinstance(layer, nn.Linear):
            return factorize_linear(layer, ranks[0], whiten)
        return factorize_pointwise(layer, ranks[0], whiten)
    if kind == "tucker2":
        return tucker2_conv(layer, (ranks[0], ranks[1]))
    if kind == "cp":
        return cp_conv(layer, ranks[0])
    fail(f"unknown low-rank kind '{kind}'")
    raise AssertionError


def dense_params(layer: nn.Module) -> int:
    return sum(p.numel() for p in layer.parameters())


def is_svd_layer(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Linear) or layer.kernel_size == (1, 1)


def plan_layer(layer: nn.Module, energy: Optional[float], ratio: Optional[float], kxk: str,
               whiten: Optional[torch.Tensor] = None, rank: Optional[int] = None) -> Optional[dict]:
    """Pick a factorisation for one layer (an SVD layer at ``rank`` when given), or None when it would not save
    parameters."""
    if is_svd_layer(layer):
        w = weighted(layer, whiten)
        m, n = w.shape
        r = rank if rank is not None else choose_rank(w, energy, ratio)
        return {"kind": "svd", "ranks": [r]} if r * (m + n) < m * n else None
    if kxk == "none" or is_depthwise(layer):
        return None
    if kxk == "tucker2":
        r_out, r_in = tucker2_ranks(layer, energy, ratio)
        k = layer.weight[0, 0].numel()
        cost = layer.in_channels * r_in + r_in * r_out * k + r_out * layer.out_channels
        return {"kind": "tucker2", "ranks": [r_out, r_in]} if cost < layer.weight.numel() else None
    c_out, c_in = layer.weight.shape[:2]
    kh, kw = layer.kernel_size
    per_rank = c_in + kh + kw + c_out
    r = max(1, int((ratio if ratio is not None else energy) * layer.weight.numel() / per_rank))
    return {"kind": "cp", "ranks": [r]} if r * per_rank < layer.weight.numel() else None


def svd_cost(m: int, n: int, r: int) -> int:
    """Weights of an m x n layer at rank r (the dense layer's when factorising would not save)."""
    return min(r * (m + n), m * n)


def shared_energy_ranks(spectra: dict[str, tuple[torch.Tensor, int, int]], ratio: float) -> dict[str, int]:
    """``global`` allocation: the highest energy threshold at which the layers together hold at most ``ratio``
    of their dense weights (bisection: cost grows with the threshold); ``{name: rank}``.
    ``spectra``: ``{name: (singular values, m, n)}``."""
    budget = ratio * sum(m * n for _, m, n in spectra.values())

    def ranks_at(e: float) -> dict[str, int]:
        return {k: rank_for_energy(s, e) for k, (s, _, _) in spectra.items()}

    def cost(ranks: dict[str, int]) -> int:
        return sum(svd_cost(m, n, ranks[k]) for k, (_, m, n) in spectra.items())

    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cost(ranks_at(mid)) <= budget else (lo, mid)
    return ranks_at(lo)


def lowrank_model(model: nn.Module, energy: Optional[float] = None, ratio: Optional[float] = None,
                  kxk: str = "tucker2", skip: tuple[str, ...] = ("head",),
                  select: Optional[Callable[[str], bool]] = None, allocation: str = "uniform",
                  whiten: str = "none", batches=None) -> dict[str, dict]:
    """Factorise every layer where it saves parameters; returns the plan ``{layer name: {kind, ranks}}``.

    For CP the energy threshold has no closed form, so ``energy`` is used as the parameter ratio there.
    ``allocation='global'`` (with ``ratio``): SVD ranks from one shared energy threshold under a budget of
    ``ratio`` x the SVD layers' weights. ``whiten`` (``diag``/``full``) needs ``batches`` of unlabeled images.
    """
    check_energy_ratio(energy, ratio)
    if kxk not in KXK_METHODS:
        fail(f"--lowrank-kxk must be one of {', '.join(KXK_METHODS)}, got '{kxk}'")
    if allocation not in ALLOCATIONS:
        fail(f"--lowrank-alloc must be one of {', '.join(ALLOCATIONS)}, got '{allocation}'")
    if whiten not in WHITENINGS:
        fail(f"--lowrank-whiten must be one of {', '.join(WHITENINGS)}, got '{whiten}'")
    if allocation == "global" and ratio is None:
        fail("--lowrank-alloc global shares a parameter budget: give --lowrank-ratio")
    if whiten != "none" and batches is None:
        fail("--lowrank-whiten needs unlabeled images for the input statistics")
    layers = lowrank_candidates(model, skip, select)
    svd_names = [k for k, m in layers.items() if is_svd_layer(m)]
    moments = input_second_moments(model, svd_names, batches) if whiten != "none" else {}
    factors = {k: whitening_factor(c, whiten) for k, c in moments.items()}
    shared = {}
    if allocation == "global":
        shared = shared_energy_ranks({k: (torch.linalg.svdvals(weighted(layers[k], factors.get(k))),
                                          *layers[k].weight.flatten(1).shape) for k in svd_names}, ratio)
    plan: dict[str, dict] = {}
    for name, layer in layers.items():
        spec = plan_layer(layer, energy, ratio, kxk, factors.get(name), shared.get(name))
        if spec is None:
            continue
        new = build_factorized(layer, spec, factors.get(name))
        spec = dict(spec, params_before=dense_params(layer), params_after=dense_params(new))
        set_submodule(model, name, new)
        plan[name] = spec
    return plan


def weighted(layer: nn.Module, whiten: Optional[torch.Tensor]) -> torch.Tensor:
    """The matrix whose spectrum decides the rank: ``W`` or the whitened ``W S``."""
    w = layer.weight.detach().flatten(1).double()
    return w if whiten is None else w @ whiten


def apply_lowrank_plan(model: nn.Module, plan: dict[str, dict]) -> None:
    """Rebuild the factorised structure of a saved model (weights are loaded afterwards)."""
    for name, spec in plan.items():
        set_submodule(model, name, factorized_shell(model.get_submodule(name), spec))


def set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


# ----------------------------------------------------------------------------- technique
def whitening_batches(ctx):
    """--lowrank-whiten's statistics: two augmented passes over labeled source-train (labels unused) and
    unlabeled target-train. Target-train alone is a few hundred images for inputs of up to 1024 dimensions, and
    the covariance over-fits them (benchmarks/lowrank_alloc.py compares the two)."""
    for _ in range(2):
        for loader in (ctx.data.labeled, ctx.data.unlabeled):
            yield from (x for x, _ in loader)


class LowRank(Technique):
    """Truncated SVD of Linears and 1x1 convs, Tucker-2 / CP of dense kxk convs."""

    name = "lowrank"
    test_args = ("--lowrank-ratio", "0.5", "--lowrank-layers", "linear+se", "--lowrank-whiten", "full")

    @staticmethod
    def add_args(group) -> None:
        group.add_argument("--lowrank-energy", type=float, default=None, help="SVD/Tucker rank keeping this energy")
        group.add_argument("--lowrank-ratio", type=float, default=None,
                           help="or: factors hold this fraction of weights")
        group.add_argument("--lowrank-kxk", default="tucker2", help=f"dense kxk convs: {' | '.join(KXK_METHODS)}")
        group.add_argument("--lowrank-layers", choices=LAYER_SETS, default="all",
                           help="linear: only the pre-logits and bottleneck Linears (the 0.85 M-param tail); se: only "
                                "the squeeze-excite 1x1 convs (0.46 M params, few MACs); linear+se: both; kxk: only the dense kxk "
                                "convs (Tucker-2 / CP; MobileNetV3 has one, its stem)")
        group.add_argument("--lowrank-alloc", choices=ALLOCATIONS, default="uniform",
                           help="uniform: every layer at --lowrank-ratio; global: the layers together at "
                                "--lowrank-ratio, ranks from one shared energy threshold (layers with a flat spectrum "
                                "keep more)")
        group.add_argument("--lowrank-whiten", choices=WHITENINGS, default="none",
                           help="data-aware SVD: truncate W S, S from the layer's input statistics on source-train and "
                                "unlabeled target-train images (diag: ASVD-style scaling; full: Cholesky, "
                                "SVD-LLM-style)")

    @staticmethod
    def active(args) -> bool:
        return args.lowrank_energy is not None or args.lowrank_ratio is not None

    @staticmethod
    def check(args) -> None:
        if args.lowrank_kxk not in KXK_METHODS:
            fail(f"--lowrank-kxk must be one of {', '.join(KXK_METHODS)}, got '{args.lowrank_kxk}'")
        for flag in ("lowrank_energy", "lowrank_ratio"):
            v = getattr(args, flag)
            if v is not None and not 0.0 < v <= 1.0:
                fail(f"--{flag.replace('_', '-')} must be in (0, 1], got {v}")
        if args.lowrank_energy is not None and args.lowrank_ratio is not None:
            fail("give one of --lowrank-energy and --lowrank-ratio")
        if args.lowrank_alloc == "global" and args.lowrank_ratio is None:
            fail("--lowrank-alloc global shares a parameter budget: give --lowrank-ratio")

    @staticmethod
    def apply(ctx, args) -> None:
        plan = lowrank_model(ctx.student, args.lowrank_energy, args.lowrank_ratio, args.lowrank_kxk,
                             select=layer_selection(ctx.student, args.lowrank_layers), allocation=args.lowrank_alloc,
                             whiten=args.lowrank_whiten, batches=whitening_batches(ctx))
        ctx.finish_float_stage({"op": "lowrank", "plan": plan}, energy=args.lowrank_energy, ratio=args.lowrank_ratio,
                               allocation=args.lowrank_alloc, whiten=args.lowrank_whiten, layers=len(plan))

    @staticmethod
    def rebuild(model, op, base):
        apply_lowrank_plan(model, op["plan"])
        return model
