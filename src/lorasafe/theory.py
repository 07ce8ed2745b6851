"""`lorasafe theory`: does overshooting the LoRA rank degrade the base task as 1 / (its intrinsic dimension)?

The paper (v4) claims that fine-tuning with a larger rank than the new task needs degrades the base
task at a rate inversely proportional to the base task's intrinsic dimension. This module tests the
claim in a linear model where everything is controlled, with the setup declared here before any run:

- Base task: inputs x = V_d z, z ~ N(0, I_d), on a random d-dimensional subspace of R^n_in (d = the
  base task's intrinsic dimension: d equally strong skills); the pre-trained map W0 (n_out × n_in,
  Gaussian entries / sqrt(n_in)) solves it: y = W0 x.
- New task (the "safety" task): inputs are base inputs plus features on r_task directions V_t
  orthogonal to the base subspace (x = V_d z + V_t w, w ~ N(0, I)); targets y = (W0 + Δ*) x + σ·ε with
  Δ* = G V_tᵀ of rank r_task. N samples. The rank-r_task update Δ* leaves the base task untouched,
  so any base degradation comes from what the extra rank picks up (the label noise).
- LoRA W = W0 + B A with rank r = r_task + overshoot (A ~ N(0, 1/n_in), B = 0), full-batch Adam on the
  new task's MSE for a fixed number of steps; the same learning rate and steps for every rank.
- Base degradation = E‖(W − W0) x‖² / E‖W0 x‖² over base inputs = ‖ΔW V_d‖_F² / ‖W0 V_d‖_F² (exact, no
  sampling); excess = degradation at rank r minus degradation at rank r_task (same seed and data).
- Fit: log excess = a + b·log(overshoot) + c·log(d) by least squares over every (d, overshoot > 0,
  seed) with positive excess. The inverse proportionality holds in this simulation if the 95%
  interval of c contains −1 and excludes 0 (criterion fixed before the first run).
Pure torch and numpy; ~1 minute on a laptop CPU with the defaults.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator


class TheoryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_in: PositiveInt = 96
    n_out: PositiveInt = 64
    dims: list[PositiveInt] = Field(default_factory=lambda: [4, 8, 16, 32, 64], description="base intrinsic dimensions d")
    r_task: PositiveInt = 2
    overshoots: list[int] = Field(default_factory=lambda: [0, 1, 2, 4, 8, 16])
    samples: PositiveInt = 256
    noise: PositiveFloat = 0.5
    steps: PositiveInt = 800
    learning_rate: PositiveFloat = 1e-2
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])

    @field_validator("overshoots")
    @classmethod
    def _reference_and_spread(cls, v: list[int]) -> list[int]:
        if sorted(set(v)) != sorted(v) or min(v) != 0 or len(v) < 3 or min(v) < 0:
            raise ValueError("overshoots must be distinct, start at 0 (the reference rank r_task) and hold at "
                             "least two positive values, e.g. [0, 1, 2, 4, 8]")
        return sorted(v)

    @field_validator("dims")
    @classmethod
    def _two_dims(cls, v: list[int]) -> list[int]:
        if len(set(v)) < 2:
            raise ValueError("dims needs at least two distinct intrinsic dimensions to fit a d exponent")
        return sorted(set(v))


def _orthonormal(n: int, k: int, g: Any) -> Any:
    import torch

    return torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64))[0]


def one_cell(cfg: TheoryConfig, d: int, seed: int) -> list[dict[str, Any]]:
    """Every overshoot for one (d, seed): same base, task and data; one LoRA fit per rank."""
    import torch

    if d + cfg.r_task > cfg.n_in:
        raise ValueError(f"d={d} plus r_task={cfg.r_task} exceeds n_in={cfg.n_in}; lower d or raise n_in")
    g = torch.Generator().manual_seed(1000 * seed + d)
    basis = _orthonormal(cfg.n_in, d + cfg.r_task, g)
    v_base, v_task = basis[:, :d], basis[:, d:]
    w0 = torch.randn(cfg.n_out, cfg.n_in, generator=g, dtype=torch.float64) / math.sqrt(cfg.n_in)
    delta_star = torch.randn(cfg.n_out, cfg.r_task, generator=g, dtype=torch.float64) @ v_task.T
    x = (torch.randn(cfg.samples, d, generator=g, dtype=torch.float64) @ v_base.T
         + torch.randn(cfg.samples, cfg.r_task, generator=g, dtype=torch.float64) @ v_task.T)
    y = x @ (w0 + delta_star).T + cfg.noise * torch.randn(cfg.samples, cfg.n_out, generator=g, dtype=torch.float64)
    x32, y32, w32 = x.float(), y.float(), w0.float()
    base_signal = float((w0 @ v_base).pow(2).sum())
    rows = []
    for over in cfg.overshoots:
        r = cfg.r_task + over
        gi = torch.Generator().manual_seed(7919 * seed + r)
        a = (torch.randn(r, cfg.n_in, generator=gi) / math.sqrt(cfg.n_in)).requires_grad_(True)
        b = torch.zeros(cfg.n_out, r, requires_grad=True)
        opt = torch.optim.Adam([a, b], lr=cfg.learning_rate)
        for _ in range(cfg.steps):
            opt.zero_grad(set_to_none=True)
            loss = (x32 @ (w32 + b @ a).T - y32).pow(2).mean()
            loss.backward()
            opt.step()
        delta = (b @ a).detach().double()
        rows.append({"d": d, "seed": seed, "rank": r, "overshoot": over,
                     "degradation": float((delta @ v_base).pow(2).sum()) / base_signal,
                     # on the new task's input span: LoRA's random A keeps components off the data for good
                     "task_error": float(((delta - delta_star) @ basis).pow(2).sum() / (delta_star @ basis).pow(2).sum()),
                     "train_mse": float(loss.detach())})
    ref = rows[0]["degradation"]  # overshoot 0 (the validator puts it first)
    for row in rows:
        row["excess"] = row["degradation"] - ref
    return rows


def fit(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Least squares of log excess on log overshoot and log d, with 95% intervals."""
    import numpy as np
    from scipy import stats

    pts = [r for r in rows if r["overshoot"] > 0 and r["excess"] > 0]
    dropped = sum(1 for r in rows if r["overshoot"] > 0) - len(pts)
    x = np.array([[1.0, math.log(r["overshoot"]), math.log(r["d"])] for r in pts])
    y = np.array([math.log(r["excess"]) for r in pts])
    if len(pts) < 4 or np.linalg.matrix_rank(x) < 3:
        raise ValueError(f"cannot fit: {len(pts)} points with positive excess do not vary both overshoot and d")
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    dof = len(y) - 3
    cov = (resid @ resid / dof) * np.linalg.inv(x.T @ x)
    half = stats.t.ppf(0.975, dof) * np.sqrt(np.diag(cov))
    r2 = 1 - float(resid @ resid) / float(((y - y.mean()) ** 2).sum())
    c, c_half = float(coef[2]), float(half[2])
    holds = (c - c_half <= -1.0 <= c + c_half) and c + c_half < 0
    return {"a": float(coef[0]), "b": float(coef[1]), "b_ci95": float(half[1]), "c": c, "c_ci95": c_half,
            "r2": r2, "points": len(pts), "dropped_nonpositive": dropped, "inverse_proportional": holds}


def run_theory(cfg: TheoryConfig, out: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every (d, seed), write theory.csv, fit.json and theory.png into `out`; returns the fit."""
    import json

    import torch

    torch.set_num_threads(1)  # tiny matrices: threads cost more than they give
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm

    rows = []
    cells = [(d, s) for d in cfg.dims for s in cfg.seeds]
    for d, s in tqdm(cells, desc="theory: (d, seed) cells", leave=False):
        rows += one_cell(cfg, d, s)
    from lorasafe.reports.tidy import write_csv

    write_csv(rows, out / "theory.csv")
    result = {"config": cfg.model_dump(), **fit(rows)}
    # Secondary, chosen after the first run showed saturation: with overshoot >= d the update cannot
    # put more directions into the d-dimensional base space, a regime no rate claim speaks of.
    try:
        result["within_base_dim"] = fit([r for r in rows if r["overshoot"] < r["d"]])
    except ValueError:
        result["within_base_dim"] = None
    result["verdict"] = verdict(result)
    (out / "fit.json").write_text(json.dumps(result, indent=1) + "\n")
    from lorasafe.reports.theory_plot import theory_plot

    theory_plot(rows, result, out / "theory.png")
    return result


def verdict(result: dict[str, Any]) -> str:
    text = _verdict(result)
    within = result.get("within_base_dim")
    if within:
        text += (f"\nSecondary fit (post hoc), overshoot < d only: d exponent {within['c']:.2f} (±{within['c_ci95']:.2f}), "
                 f"overshoot exponent {within['b']:.2f} (±{within['b_ci95']:.2f}), R² = {within['r2']:.3f}; "
                 f"inverse proportionality {'holds' if within['inverse_proportional'] else 'does not hold'} in that range.")
    return text


def _verdict(result: dict[str, Any]) -> str:
    c, h = result["c"], result["c_ci95"]
    head = (f"fit over {result['points']} points: excess base degradation ∝ overshoot^{result['b']:.2f} (±{result['b_ci95']:.2f}) "
            f"· d^{c:.2f} (±{h:.2f}), R² = {result['r2']:.3f}")
    if result["inverse_proportional"]:
        return head + f"\nThe inverse proportionality to the base task's intrinsic dimension HOLDS here: the 95% interval of the d exponent, [{c - h:.2f}, {c + h:.2f}], contains −1 and excludes 0."
    return head + f"\nThe inverse proportionality to the base task's intrinsic dimension does NOT hold here: the 95% interval of the d exponent is [{c - h:.2f}, {c + h:.2f}] (the criterion was: contains −1 and excludes 0)."
