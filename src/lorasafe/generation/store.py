"""The resumable generation store: JSONL records keyed by (item id, sample index).

A killed generation resumes from what the file holds: finished keys are skipped, nothing is
duplicated, a torn last line is repaired. Each record keeps the raw text, its thinking and answer
parts, and whether the token limit cut it.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Callable, Iterable

from lorasafe.data.chat import ChatRenderer
from lorasafe.data.jsonl import append_jsonl, read_store
from lorasafe.data.records import Item
from lorasafe.generation.base import Generator, SamplingParams


def record(item: Item, sample: int, text: str, n_tokens: int, truncated: bool, renderer: ChatRenderer) -> dict:
    split = renderer.split_output(text)
    return {"id": item.id, "sample": sample, "kind": item.kind, "prompt": item.prompt, "raw": text,
            "thinking": split.thinking, "answer": split.answer, "think_closed": split.closed,
            "truncated": truncated, "n_tokens": n_tokens}


def generate_to_store(path: Path, items: list[Item], samples: int, generator: Generator, model: object,
                      renderer: ChatRenderer, params: SamplingParams, batch_size: int,
                      on_batch: Callable[[int], None] | None = None) -> list[dict]:
    """Generate every missing (id, sample) of `items` into `path`; returns all records in item order."""
    have = {(r["id"], r["sample"]) for r in read_store(path)}
    todo = [(it, s) for s in range(samples) for it in items if (it.id, s) not in have]
    # Longest prompts first: batches of similar length waste less padding.
    todo.sort(key=lambda x: -len(x[0].prompt))
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        # The seed depends on the batch's own content, so a resumed run samples what it would have.
        seed = params.seed * 1_000_003 + sum(zlib.crc32(it.id.encode()) % 10_007 + s for it, s in chunk)
        batch_params = SamplingParams(params.max_new_tokens, params.temperature, params.top_p, seed)
        outs = generator.generate(model, [renderer.prompt(it.prompt) for it, _ in chunk], batch_params)
        append_jsonl(path, (record(it, s, o.text, o.n_tokens, o.truncated, renderer) for (it, s), o in zip(chunk, outs)))
        if on_batch:
            on_batch(len(chunk))
    return ordered(read_store(path), items, samples)


def ordered(rows: Iterable[dict], items: list[Item], samples: int) -> list[dict]:
    by_key = {(r["id"], r["sample"]): r for r in rows}
    return [by_key[(it.id, s)] for it in items for s in range(samples) if (it.id, s) in by_key]
