"""Resolving a `SuiteRef` from the config to items: mini-world suites, bundled benchmarks, JSONL files.

Must not import torch.
"""

from __future__ import annotations

from functools import lru_cache

from lorasafe.config.schema import SuiteRef, ThinkConfig
from lorasafe.data.chat import ThinkFormat
from lorasafe.data.records import Item, load_items


@lru_cache(maxsize=4)
def _world(seed: int, open_tag: str, close_tag: str, refusal_thinking: str):
    from lorasafe.mini.world import MiniWorld

    return MiniWorld(seed=seed, think=ThinkFormat(open_tag, close_tag), refusal_thinking=refusal_thinking)


def think_format(think: ThinkConfig) -> ThinkFormat:
    return ThinkFormat(think.open_tag, think.close_tag, think.enable_thinking)


def load_suite(ref: SuiteRef, think: ThinkConfig, world_seed: int = 0, option_seed: int = 0) -> list[Item]:
    """The items of one suite. `world_seed` builds the mini world; `option_seed` orders the options of
    multiple-choice hub suites (GPQA), so each seed of a multi-seed evaluation sees its own order."""
    if ref.mini is not None:
        items = _world(world_seed, think.open_tag, think.close_tag, think.refusal_thinking).suite(ref.mini)
    elif ref.bundled is not None:
        from lorasafe.data.bundled import load_bundled

        items = load_bundled(ref.bundled)
    elif ref.hub is not None:
        from lorasafe.data.hub import load_hub_suite
        from lorasafe.errors import DataError

        try:
            items = load_hub_suite(ref.hub, local_path=ref.path, seed=option_seed, think=think_format(think),
                                   refusal_thinking=think.refusal_thinking)
        except ImportError as e:  # the hub extra is optional; say how to get it, without a traceback
            raise DataError(f"Suite {ref.hub!r} needs an optional package: {e}") from None
    else:
        items = load_items(ref.path)
    if ref.sample is not None and ref.sample < len(items):
        import random

        # Seeded by the suite and the size only: every run, seed and variant evaluates the same items.
        keep = set(random.Random(f"{ref.name}:{ref.sample}").sample(range(len(items)), ref.sample))
        items = [it for i, it in enumerate(items) if i in keep]
    return items[: ref.limit] if ref.limit else items
