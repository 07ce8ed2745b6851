"""Geometry on constructed matrices: known spectra, known overlaps, known angles; factorised == dense."""

import math

import pytest
import torch

from lorasafe.geometry import Dense, LowRank, overlap, principal_angles, spectral_norm_dense, top_subspaces
from lorasafe.geometry.update import stable_rank


def _orthonormal(n: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64))[0]


def _with_spectrum(m: int, n: int, s: list[float], seed: int = 0):
    u, v = _orthonormal(m, len(s), seed), _orthonormal(n, len(s), seed + 1)
    return u, torch.tensor(s, dtype=torch.float64), v


@pytest.mark.parametrize("s", [[3.0], [2.0, 1.0], [4.0, 2.0, 2.0, 1.0]])
def test_stable_rank_is_exact_for_a_known_spectrum(s):
    u, sv, v = _with_spectrum(40, 30, s)
    expected = sum(x * x for x in s) / s[0] ** 2
    dense = Dense((u * sv) @ v.T)
    low = LowRank(u * sv, v.T, scale=1.0)
    assert stable_rank(dense) == pytest.approx(expected, rel=1e-9)
    assert stable_rank(low) == pytest.approx(expected, rel=1e-12)
    assert low.spectral() == pytest.approx(s[0], rel=1e-12)
    assert low.frobenius() == pytest.approx(math.sqrt(sum(x * x for x in s)), rel=1e-12)


def test_factorised_equals_dense_within_1e_5():
    g = torch.Generator().manual_seed(3)
    b, a = torch.randn(96, 4, generator=g), torch.randn(4, 64, generator=g)
    low = LowRank(b, a, scale=2.0)
    dense = Dense(low.dense())
    w0 = torch.randn(96, 64, generator=g)
    sub = top_subspaces(w0, 8)
    pairs = [(low.frobenius(), dense.frobenius()), (low.spectral(), dense.spectral()),
             (stable_rank(low), stable_rank(dense))]
    pairs += [(overlap(low, sub, side), overlap(dense, sub, side)) for side in ("left", "right", "both")]
    for got, want in pairs:
        assert abs(got - want) <= 1e-5 * abs(want)
    angles_low = principal_angles(low.column_basis(4), sub.U)
    angles_dense = principal_angles(dense.column_basis(4), sub.U)
    assert torch.allclose(angles_low, angles_dense, atol=1e-5)


def test_overlap_is_exact_for_an_update_split_across_the_subspace():
    m, n, k = 30, 20, 5
    u, v = _orthonormal(m, m, 7), _orthonormal(n, n, 8)
    sv = torch.linspace(10.0, 1.0, n, dtype=torch.float64)
    w0 = (u[:, :n] * sv) @ v.T
    sub = top_subspaces(w0, k)
    # ΔW = 3·u1 v1ᵀ (inside both top-k spaces) + 4·u_{k+1} v_{k+2}ᵀ (outside both): 9 / 25 of the energy inside.
    delta = 3 * torch.outer(u[:, 0], v[:, 0]) + 4 * torch.outer(u[:, k], v[:, k + 1])
    low = LowRank(torch.stack([3 * u[:, 0], 4 * u[:, k]], 1), torch.stack([v[:, 0], v[:, k + 1]]))
    for update in (Dense(delta), low):
        assert overlap(update, sub, "left") == pytest.approx(9 / 25, abs=1e-10)
        assert overlap(update, sub, "right") == pytest.approx(9 / 25, abs=1e-10)
        assert overlap(update, sub, "both") == pytest.approx(9 / 25, abs=1e-10)
    # Left inside, right outside: left overlap 1, right 0.
    cross = torch.outer(u[:, 1], v[:, k + 3])
    assert overlap(Dense(cross), sub, "left") == pytest.approx(1.0, abs=1e-10)
    assert overlap(Dense(cross), sub, "right") == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("theta", [0.0, 0.3, 1.0, math.pi / 2])
def test_principal_angles_are_exact(theta):
    e = torch.eye(6, dtype=torch.float64)
    x = e[:, :2]
    y = torch.stack([e[:, 0], math.cos(theta) * e[:, 1] + math.sin(theta) * e[:, 4]], 1)
    assert principal_angles(x, y).tolist() == pytest.approx([0.0, theta], abs=1e-7)


def test_block_power_iteration_separates_close_singular_values():
    u, sv, v = _with_spectrum(200, 150, [1.0, 0.999, 0.998, 0.5])
    assert spectral_norm_dense((u * sv) @ v.T) == pytest.approx(1.0, rel=1e-8)


def test_k_beyond_the_matrix_is_a_clear_error():
    with pytest.raises(ValueError, match="1 <= k <= 4"):
        top_subspaces(torch.randn(4, 9), 5)
    with pytest.raises(ValueError, match="outside 1..3"):
        top_subspaces(torch.randn(8, 9), 3).top(4)


def test_factors_that_do_not_chain_are_rejected():
    with pytest.raises(ValueError, match="do not chain"):
        LowRank(torch.randn(5, 2), torch.randn(3, 4))
