"""A weight update ΔW, as LoRA factors or as a dense difference, and its norms and projections.

`LowRank` keeps ΔW = scale·B·A factorised: QR of B and of Aᵀ reduce every quantity to an r×r core
C with ΔW = Q_B C Q_Aᵀ, so the singular values, norms and projections of an m×n update cost
O((m+n)r²) instead of the O(mn·min(m,n)) of a dense SVD. `Dense` holds a full-fine-tuning difference
W − W0; its spectral norm comes from block power iteration, never a full SVD. Both answer the same
`Update` protocol, so the analysis never branches on the method. Computations run in float64 on the
tensors' device. Imports torch only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import torch
from torch import Tensor


class Update(Protocol):
    shape: tuple[int, int]

    def frobenius(self) -> float: ...

    def spectral(self) -> float: ...

    def project_fro2(self, left: Tensor | None, right: Tensor | None) -> float:
        """‖Lᵀ ΔW R‖_F² for orthonormal L (m×k) and R (n×k); None leaves that side unprojected."""

    def column_basis(self, q: int) -> Tensor:
        """Orthonormal basis (m×q) of the top-q left singular vectors of ΔW."""


def stable_rank(update: Update) -> float:
    """‖ΔW‖_F² / ‖ΔW‖_2²: how many directions the update really uses (nan for a zero update)."""
    spec = update.spectral()
    return update.frobenius() ** 2 / spec ** 2 if spec > 0 else float("nan")


@dataclass(frozen=True)
class LowRank:
    """ΔW = scale · B @ A with B (m×r) and A (r×n): a LoRA update, never materialised."""

    B: Tensor
    A: Tensor
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.B.ndim != 2 or self.A.ndim != 2 or self.B.shape[1] != self.A.shape[0]:
            raise ValueError(f"LoRA factors do not chain: B {tuple(self.B.shape)}, A {tuple(self.A.shape)}")

    @property
    def shape(self) -> tuple[int, int]:
        return (self.B.shape[0], self.A.shape[1])

    @cached_property
    def _factored(self) -> tuple[Tensor, Tensor, Tensor]:
        qb, rb = torch.linalg.qr(self.B.double())
        qa, ra = torch.linalg.qr(self.A.double().T)
        return qb, self.scale * rb @ ra.T, qa  # ΔW = qb @ core @ qa.T

    @cached_property
    def singular_values(self) -> Tensor:
        return torch.linalg.svdvals(self._factored[1])

    def frobenius(self) -> float:
        return float(self.singular_values.norm())

    def spectral(self) -> float:
        return float(self.singular_values[0])

    def project_fro2(self, left: Tensor | None, right: Tensor | None) -> float:
        qb, core, qa = self._factored
        m = core if left is None else (left.double().T @ qb) @ core
        m = m if right is None else m @ (qa.T @ right.double())
        return float(m.pow(2).sum())

    def column_basis(self, q: int) -> Tensor:
        qb, core, _ = self._factored
        u, _, _ = torch.linalg.svd(core)
        return qb @ u[:, :q]

    def dense(self) -> Tensor:
        """The materialised m×n update (for tests and merging only)."""
        return self.scale * self.B.double() @ self.A.double()


def spectral_norm_dense(m: Tensor, block: int = 4, tol: float = 1e-10, max_iter: int = 500, seed: int = 0) -> float:
    """Largest singular value of a dense matrix by block power iteration on MᵀM with Rayleigh-Ritz.

    A block of b vectors converges at rate σ_{b+1}/σ_1 rather than plain power iteration's σ_2/σ_1,
    which matters for full-fine-tuning updates whose top singular values are close together.
    """
    m = m.double()
    n = m.shape[1]
    b = min(block, n)
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.linalg.qr(torch.randn(n, b, generator=g, dtype=torch.float64).to(m.device))[0]
    prev = 0.0
    for _ in range(max_iter):
        y = m.T @ (m @ x)
        x, _ = torch.linalg.qr(y)
        top = float(torch.linalg.eigvalsh(x.T @ (m.T @ (m @ x)))[-1].clamp(min=0.0))
        if abs(top - prev) <= tol * max(top, 1e-300):
            break
        prev = top
    return top ** 0.5


@dataclass(frozen=True)
class Dense:
    """A dense update W − W0 (full fine-tuning)."""

    delta: Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.delta.shape)  # type: ignore[return-value]

    def frobenius(self) -> float:
        return float(self.delta.double().norm())

    @cached_property
    def _spectral(self) -> float:
        return spectral_norm_dense(self.delta)

    def spectral(self) -> float:
        return self._spectral

    def project_fro2(self, left: Tensor | None, right: Tensor | None) -> float:
        m = self.delta.double()
        m = m if left is None else left.double().T @ m
        m = m if right is None else m @ right.double()
        return float(m.pow(2).sum())

    def column_basis(self, q: int) -> Tensor:
        # Randomised range finder with power iterations (Halko et al.): the top-q left singular
        # vectors without a full SVD; oversampling keeps them accurate when the spectrum is flat.
        u, _, _ = torch.svd_lowrank(self.delta.double(), q=min(q + 8, min(self.shape)), niter=6)
        return u[:, :q]
