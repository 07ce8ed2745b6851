"""Building refusal SFT data (DirectRefusal format) from any harmful-prompt suite.

A user without hub access can still align: take a harmful suite (say AdvBench), drop every prompt
that duplicates or nearly duplicates an evaluation suite, and give each remaining prompt a refusal
target in the think-format contract. The removed counts are returned so they can be reported.
Must not import torch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lorasafe.data.chat import ThinkFormat
from lorasafe.data.dedup import dedup
from lorasafe.data.records import Item
from lorasafe.data.refusal import DEFAULT_REFUSAL_THINKING, REFUSALS, refusal_target


@dataclass(frozen=True)
class Decontaminated:
    items: list[Item]
    exact_removed: int
    near_removed: int


def decontaminate(train: list[Item], against: list[Item], threshold: float = 0.5) -> Decontaminated:
    """`train` without items that duplicate (exactly or nearly) each other or any of `against`."""
    result = dedup([it.prompt for it in train], threshold=threshold, against=[it.prompt for it in against])
    return Decontaminated([train[i] for i in result.kept], result.exact, result.near)


def refusal_items(harmful: list[Item], against: list[Item] = (), think: ThinkFormat | None = None,
                  thinking: str = DEFAULT_REFUSAL_THINKING, seed: int = 0,
                  refusals: tuple[str, ...] = REFUSALS) -> Decontaminated:
    """Refusal training items for `harmful`, decontaminated against `against`."""
    clean = decontaminate(harmful, list(against))
    rng = random.Random(f"refusals:{seed}")
    items = [Item(it.id, it.prompt, "harmful", target=refusal_target(rng.choice(refusals), think, thinking),
                  meta=it.meta) for it in clean.items]
    return Decontaminated(items, clean.exact_removed, clean.near_removed)
