"""Turning items into token-level training examples through the chat renderer.

Owns the completion-only label mask: prompt tokens and padding are -100, so the loss is on what
the model must generate. Must not render templates itself (that is data/chat.py's job).
"""

from __future__ import annotations

from dataclasses import dataclass

from lorasafe.data.chat import ChatRenderer
from lorasafe.data.records import Item
from lorasafe.errors import DataError

IGNORE = -100


@dataclass(frozen=True)
class Example:
    prompt_ids: list[int]
    completion_ids: list[int]

    @property
    def input_ids(self) -> list[int]:
        return self.prompt_ids + self.completion_ids


def encode_examples(renderer: ChatRenderer, items: list[Item], max_length: int, source: str = "training data") -> list[Example]:
    if not items:
        raise DataError(f"The training set ({source}) is empty; add items with a `target` to train on.")
    untargeted = [it.id for it in items if not it.target]
    if untargeted:
        raise DataError(
            f"{len(untargeted)} training item(s) in {source} have no `target` (first: {untargeted[0]!r}); "
            "training items need the assistant text to learn, e.g. a refusal built with `lorasafe data refusals`."
        )
    tok = renderer.tokenizer
    prompts = tok([renderer.prompt(it.prompt) for it in items], add_special_tokens=False)["input_ids"]
    completions = tok([renderer.completion(it.prompt, it.target) for it in items], add_special_tokens=False)["input_ids"]
    out = []
    for p, c in zip(prompts, completions):
        keep = max(0, min(len(c), max_length - len(p)))  # truncate the completion, never the prompt
        if keep == 0:
            continue
        out.append(Example(p, c[:keep]))
    if not out:
        raise DataError(f"Every prompt in {source} is longer than training.max_length={max_length}; raise it.")
    return out


def collate(batch: list[Example], pad_id: int) -> dict:
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        n, p = len(e.input_ids), len(e.prompt_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, p:n] = torch.tensor(e.completion_ids)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
