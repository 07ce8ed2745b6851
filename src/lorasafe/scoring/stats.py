"""Mean and 95% confidence interval of a metric over seeds (samples per prompt).

A Student-t interval over per-seed values: with the paper's 8 seeds the normal approximation
would understate the width by about 20%. The t quantiles are tabulated (no scipy dependency for
one line of statistics). Must not import torch.
"""

from __future__ import annotations

import math

# Two-sided 95% Student-t quantiles t_{0.975, df} for df = 1..30; beyond that the normal 1.96.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def mean_ci95(values: list[float]) -> tuple[float, float | None]:
    """(mean, half-width of the 95% interval); the half-width is None for a single value."""
    n = len(values)
    if n == 0:
        return float("nan"), None
    mean = sum(values) / n
    if n == 1:
        return mean, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    t = _T975[n - 2] if n - 1 <= len(_T975) else 1.96
    return mean, t * sd / math.sqrt(n)
