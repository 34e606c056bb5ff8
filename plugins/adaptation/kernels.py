"""Kernels and the (multi-kernel) MMD estimators shared by DAN and JAN.

``GaussianKernel`` follows tllib: ``k(x, y) = exp(-||x - y||^2 / (2 sigma^2))`` with, when
``track_running_stats``, ``sigma^2 = alpha * mean(||x_i - x_j||^2)`` taken from the current batch (detached), so
a family ``alpha in 2^k`` spans bandwidths around the data's own scale.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn


def fp32(device: torch.device):
    """Turn autocast off: second-order statistics (covariances, confusion matrices) are differences of
    near-equal sums that bfloat16 would drown in rounding; they are tiny, so float32 costs nothing."""
    return torch.autocast(device_type=device.type, enabled=False)


class GaussianKernel(nn.Module):
    """Gram matrix of a Gaussian kernel over the rows of ``x`` (``N x N``)."""

    def __init__(self, sigma: Optional[float] = None, track_running_stats: bool = True, alpha: float = 1.0):
        super().__init__()
        if not track_running_stats and sigma is None:
            raise ValueError("a fixed-bandwidth GaussianKernel needs sigma")
        self.track_running_stats, self.alpha = track_running_stats, alpha
        self.sigma_square = None if sigma is None else float(sigma) ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d2 = torch.cdist(x, x).pow(2) if x.dim() == 2 else torch.cdist(x.flatten(1), x.flatten(1)).pow(2)
        if self.track_running_stats:
            self.sigma_square = self.alpha * d2.detach().mean().clamp_min(1e-12)
        return torch.exp(-d2 / (2 * self.sigma_square))


def mmd_from_kernel_matrix(k: torch.Tensor, n_s: int, linear: bool = False) -> torch.Tensor:
    """MMD^2 between the first ``n_s`` rows and the rest, given their joint kernel matrix.

    Quadratic (default): the unbiased U-statistic of Gretton et al. (2012, eq. 3): diagonal terms excluded,
    ``mean_{i!=j} k(s_i,s_j) + mean_{i!=j} k(t_i,t_j) - 2 mean k(s_i,t_j)``; it can be slightly negative.
    (tllib adds the constant ``2/(B-1)`` to its equivalent; constants do not change gradients.)
    Linear: DAN's linear-time estimate over consecutive pairs ``(i, i+1 mod B)``
    ``k(s_i,s_j) + k(t_i,t_j) - k(s_i,t_j) - k(s_j,t_i)``, on the first ``B = min(n_s, n_t)`` of each domain.
    """
    n_t = k.shape[0] - n_s
    if n_s < 2 or n_t < 2:
        raise ValueError("MMD needs at least 2 samples per domain")
    if linear:
        b = min(n_s, n_t)
        i = torch.arange(b, device=k.device)
        j = (i + 1) % b
        s, t = i, n_s + i
        s2, t2 = j, n_s + j
        return (k[s, s2] + k[t, t2] - k[s, t2] - k[s2, t]).mean()
    k_ss, k_tt, k_st = k[:n_s, :n_s], k[n_s:, n_s:], k[:n_s, n_s:]
    off = lambda m, n: (m.sum() - m.diagonal().sum()) / (n * (n - 1))  # noqa: E731
    return off(k_ss, n_s) + off(k_tt, n_t) - 2 * k_st.mean()


class MultipleKernelMaximumMeanDiscrepancy(nn.Module):
    """MK-MMD (DAN, Long et al. 2015): MMD^2 under the sum of ``kernels``. ``forward(z_s, z_t)``."""

    def __init__(self, kernels: Sequence[nn.Module], linear: bool = False):
        super().__init__()
        self.kernels, self.linear = nn.ModuleList(kernels), linear

    def forward(self, z_s: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
        with fp32(z_s.device):
            z = torch.cat([z_s, z_t]).float()
            k = sum(kernel(z) for kernel in self.kernels)
            return mmd_from_kernel_matrix(k, len(z_s), self.linear)


class JointMultipleKernelMaximumMeanDiscrepancy(nn.Module):
    """JMMD (JAN, Long et al. 2017): MMD^2 under the product over layers of each layer's kernel sum.

    ``forward(z_s, z_t)`` with ``z_s = (features_s, softmax_s, ...)`` and ``z_t`` alike; ``kernels`` holds one
    sequence of kernels per layer. ``thetas`` (optional) transforms each layer first (JAN-A's adversarial nets).
    """

    def __init__(self, kernels: Sequence[Sequence[nn.Module]], linear: bool = False,
                 thetas: Optional[Sequence[nn.Module]] = None):
        super().__init__()
        self.kernels = nn.ModuleList(nn.ModuleList(layer) for layer in kernels)
        self.linear = linear
        self.thetas = nn.ModuleList(thetas) if thetas is not None else nn.ModuleList(nn.Identity() for _ in kernels)

    def forward(self, z_s: Sequence[torch.Tensor], z_t: Sequence[torch.Tensor]) -> torch.Tensor:
        if not (len(z_s) == len(z_t) == len(self.kernels)):
            raise ValueError(f"JMMD got {len(z_s)}/{len(z_t)} layers for {len(self.kernels)} kernel groups")
        k = 1.0
        for layer_s, layer_t, kernels, theta in zip(z_s, z_t, self.kernels, self.thetas):
            z = torch.cat([theta(layer_s), theta(layer_t)])
            with fp32(z.device):
                k = k * sum(kernel(z.float()) for kernel in kernels)
        with fp32(z_s[0].device):
            return mmd_from_kernel_matrix(k, len(z_s[0]), self.linear)


def gaussian_kernel_family(lo: int = -3, hi: int = 1) -> list[GaussianKernel]:
    """DAN/JAN's bandwidth family ``alpha = 2^k, k = lo..hi`` (tllib: k in range(-3, 2))."""
    return [GaussianKernel(alpha=2.0 ** k) for k in range(lo, hi + 1)]
