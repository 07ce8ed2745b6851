"""The base weights' principal subspaces, and how much of an update lies in them.

`top_subspaces(W0, k)` gives W0's top-k left and right singular vectors (exact SVD for matrices
up to `EXACT_MAX_DIM`, a randomised SVD with power iterations above). `overlap` is the fraction of
‖ΔW‖_F² inside them: left = ‖U_kᵀΔW‖²/‖ΔW‖², right = ‖ΔW V_k‖²/‖ΔW‖², both = ‖U_kᵀΔW V_k‖²/‖ΔW‖².
A random update has left overlap ≈ k/m; an update that reshapes W0's own principal directions has
overlap near 1. `principal_angles` compares two column spaces. Imports torch only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from lorasafe.geometry.update import Update

Side = Literal["left", "right", "both"]
EXACT_MAX_DIM = 4096


@dataclass(frozen=True)
class Subspaces:
    """W0's top singular triplets: U (m×K), S (K,), V (n×K), K = the largest k asked for."""

    U: Tensor
    S: Tensor
    V: Tensor

    @property
    def k_max(self) -> int:
        return self.S.shape[0]

    def top(self, k: int) -> Subspaces:
        if not 0 < k <= self.k_max:
            raise ValueError(f"k={k} is outside 1..{self.k_max}, the singular vectors computed for this matrix")
        return Subspaces(self.U[:, :k], self.S[:k], self.V[:, :k])


def check_k(k: int, shape: tuple[int, ...], where: str) -> None:
    if k < 1 or k > min(shape):
        raise ValueError(f"k={k} is impossible for {where} of shape {tuple(shape)}: the top-k singular subspace "
                         f"needs 1 <= k <= {min(shape)}; choose a smaller k.")


def top_subspaces(w0: Tensor, k: int, seed: int = 0) -> Subspaces:
    """The top-k singular subspaces of W0, in float64."""
    check_k(k, tuple(w0.shape), "a weight matrix")
    w = w0.detach().double()
    if min(w.shape) <= EXACT_MAX_DIM or k > min(w.shape) // 4:
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        return Subspaces(u[:, :k], s[:k], vh[:k].T)
    torch.manual_seed(seed)  # svd_lowrank draws its test matrix from the global generator
    u, s, v = torch.svd_lowrank(w, q=min(k + 16, min(w.shape)), niter=8)
    return Subspaces(u[:, :k], s[:k], v[:, :k])


def overlap(update: Update, sub: Subspaces, side: Side = "left") -> float:
    """Fraction of ‖ΔW‖_F² lying in W0's subspace `sub` (nan for a zero update)."""
    total = update.frobenius() ** 2
    if total == 0:
        return float("nan")
    left = sub.U if side in ("left", "both") else None
    right = sub.V if side in ("right", "both") else None
    return update.project_fro2(left, right) / total


def principal_angles(x: Tensor, y: Tensor) -> Tensor:
    """Principal angles (radians, ascending) between the column spaces of x (m×p) and y (m×q)."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"column spaces live in different dimensions: {x.shape[0]} vs {y.shape[0]}")
    qx = torch.linalg.qr(x.double())[0]
    qy = torch.linalg.qr(y.double())[0]
    cos = torch.linalg.svdvals(qx.T @ qy).clamp(max=1.0)
    return torch.arccos(cos)
