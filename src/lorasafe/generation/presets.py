"""Named sampling presets, so a config says `preset: paper-safety` instead of copying numbers.

The paper's settings (arXiv 2507.17075, official repository): safety prompts are sampled at
temperature 1.0, top-p 1.0 with 2,048 new tokens; reasoning benchmarks at temperature 0.6, top-p
0.95 with up to 32,768 new tokens (8 seeds averaged). Must not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from lorasafe.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    temperature: float
    top_p: float
    max_new_tokens: int
    samples: int = 1


PRESETS: dict[str, Preset] = {
    "paper-safety": Preset(temperature=1.0, top_p=1.0, max_new_tokens=2048, samples=1),
    "paper-reasoning": Preset(temperature=0.6, top_p=0.95, max_new_tokens=32768, samples=8),
    "greedy": Preset(temperature=0.0, top_p=1.0, max_new_tokens=2048, samples=1),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"Sampling preset {name!r} is unknown; choose one of: {', '.join(PRESETS)}.")
    return PRESETS[name]
