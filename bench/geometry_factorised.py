"""Factorised vs dense geometry of a LoRA update on a 5120×13824 matrix (a 14B model's up_proj).

For each rank r, ΔW = s·B·A with random factors; both routes compute ‖ΔW‖_F, ‖ΔW‖_2, the stable
rank and the overlap (left, right, both) with W0's top-k singular subspaces:
- dense: materialise ΔW (float32, as a merge would), `torch.linalg.svdvals` for the spectrum and
  dense products for the overlaps;
- factorised: `lorasafe.geometry.LowRank` (QR of the factors, an r×r core).
W0's subspaces are shared by both routes and not timed: W0 = Q1·diag(σ)·Q2ᵀ + a small dense part is
built so its top-k singular vectors are known without an SVD of W0. Prints, per rank, both times,
the speed ratio (target ≥ 100×) and the largest relative difference over every quantity.

Usage: python bench/geometry_factorised.py [--ranks 1,4,16,64] [--k 8,64] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch

from lorasafe.geometry import LowRank, overlap
from lorasafe.geometry.subspace import Subspaces
from lorasafe.geometry.update import stable_rank

M, N = 5120, 13824


def quantities(update, subs: dict[int, Subspaces]) -> dict[str, float]:
    out = {"fro": update.frobenius(), "spectral": update.spectral(), "stable_rank": stable_rank(update)}
    for k, sub in subs.items():
        for side in ("left", "right", "both"):
            out[f"overlap_{side}@{k}"] = overlap(update, sub, side)
    return out


def dense_route(b: torch.Tensor, a: torch.Tensor, scale: float, subs: dict[int, Subspaces]) -> dict[str, float]:
    delta = scale * (b @ a)  # float32, 283 MB
    s = torch.linalg.svdvals(delta).double()
    fro2 = float((s ** 2).sum())
    out = {"fro": fro2 ** 0.5, "spectral": float(s[0]), "stable_rank": fro2 / float(s[0]) ** 2}
    for k, sub in subs.items():
        u, v = sub.U.float(), sub.V.float()
        out[f"overlap_left@{k}"] = float((u.T @ delta).double().pow(2).sum()) / fro2
        out[f"overlap_right@{k}"] = float((delta @ v).double().pow(2).sum()) / fro2
        out[f"overlap_both@{k}"] = float((u.T @ delta @ v).double().pow(2).sum()) / fro2
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", default="1,4,16,64")
    ap.add_argument("--k", default="8,64")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ranks = [int(x) for x in args.ranks.split(",")]
    ks = [int(x) for x in args.k.split(",")]
    g = torch.Generator().manual_seed(0)
    kmax = max(ks)
    q1 = torch.linalg.qr(torch.randn(M, kmax, generator=g, dtype=torch.float64))[0]
    q2 = torch.linalg.qr(torch.randn(N, kmax, generator=g, dtype=torch.float64))[0]
    sigma = torch.linspace(10.0, 1.0, kmax, dtype=torch.float64)
    subs = {k: Subspaces(q1[:, :k], sigma[:k], q2[:, :k]) for k in ks}
    print(f"ΔW {M}x{N}, k = {ks}, torch threads {torch.get_num_threads()}")
    print(f"{'rank':>5} {'dense s':>9} {'factorised s':>13} {'speed-up':>9} {'max rel diff':>13}")
    for r in ranks:
        b = torch.randn(M, r, generator=g) / r ** 0.5
        a = torch.randn(r, N, generator=g) / N ** 0.5
        scale = 16.0 / r
        t0 = time.perf_counter()
        want = dense_route(b, a, scale, subs)
        t_dense = time.perf_counter() - t0
        t0 = time.perf_counter()
        got = quantities(LowRank(b, a, scale), subs)
        t_fact = time.perf_counter() - t0
        diff = max(abs(got[q] - want[q]) / max(abs(want[q]), 1e-30) for q in want)
        print(f"{r:>5} {t_dense:>9.2f} {t_fact:>13.4f} {t_dense / t_fact:>8.0f}x {diff:>13.2e}")
    print("target: speed-up >= 100x; the differences are float32 rounding in the dense route")


if __name__ == "__main__":
    main()
