"""Turning items into token-level training examples through the chat renderer.

Owns the completion-only label mask: prompt tokens and padding are -100, so the loss is on what
the model must generate; and the trainer's micro-batches, padded or packed without padding. Must not render templates itself (that is data/chat.py's job).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

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
    texts = [renderer.pair(it.prompt, it.target) for it in items]
    prompts = tok([p for p, _ in texts], add_special_tokens=False)["input_ids"]
    completions = tok([c for _, c in texts], add_special_tokens=False)["input_ids"]
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


@dataclass
class TrainBatch:
    """One micro-batch as the trainer feeds it (training/loss.py reads it).

    `loss_index` holds the flat positions (row * width + column) whose next token is a completion token and
    `loss_targets` those tokens, both built here on the host, so selecting them on a GPU needs no sync."""

    model_inputs: dict  # input_ids, and attention_mask (padded) or position_ids (packed)
    labels: Any  # HF-style labels (-100 off the completion), for models that keep their own forward
    loss_index: Any
    loss_targets: Any
    n_targets: int
    n_tokens: int  # real tokens, padding excluded

    def _map(self, fn: Any) -> "TrainBatch":
        move = lambda v: fn(v) if hasattr(v, "device") else v  # noqa: E731 - ints (max_length_q) stay
        return TrainBatch({k: move(v) for k, v in self.model_inputs.items()}, move(self.labels),
                          move(self.loss_index), move(self.loss_targets), self.n_targets, self.n_tokens)

    def pinned(self) -> "TrainBatch":
        """Page-locked host copies, so the copy to a GPU runs asynchronously (done on the prefetch thread)."""
        return self._map(lambda t: t.pin_memory())

    def to(self, device: Any) -> "TrainBatch":
        if str(device) == "cpu":
            return self
        return self._map(lambda t: t.to(device, non_blocking=True))


def pack_rows(lengths: list[int], width: int) -> list[list[int]]:
    """First-fit decreasing of lengths into rows of at most `width` (a longer one gets a row of its own);
    returns the indices in each row."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        fit = next((r for r, left in enumerate(room) if left >= lengths[i]), None)
        if fit is None:
            rows.append([i])
            room.append(width - lengths[i])
        else:
            rows[fit].append(i)
            room[fit] -= lengths[i]
    return rows


def row_width(lengths: list[int], attention_span: float | None) -> int:
    """The packed row width that costs least: rows x width x (1 + width / attention_span).

    With a dense attention mask (SDPA or eager, as on a CPU) a row of width W pays W^2 for attention, so
    one row of the whole micro-batch can cost more than the padding it saves; `attention_span` is the
    context length at which a position's attention costs as much as its linear layers (see
    `attention_span`). None (flash-attention's varlen path: no quadratic mask): one row of everything."""
    total, longest = sum(lengths), max(lengths)
    if attention_span is None:
        return total
    best = None
    # candidates: the widths that would hold the micro-batch in k equal rows, with some slack for the fit
    even = {max(longest, -(-total // k)) for k in range(1, len(lengths) + 1)}
    for w in sorted(even | {min(total, int(w * 1.1)) for w in even}):
        rows = pack_rows(lengths, w)
        width = max(sum(lengths[i] for i in r) for r in rows)
        cost = len(rows) * width * (1 + width / attention_span)
        if best is None or cost < best[0]:
            best = (cost, w)
    return best[1]


def attention_span(config: Any) -> float:
    """Context length at which a position's attention flops (4 x width x hidden, QK^T and AV) equal its
    linear layers' (2 x (q,o: 2 h^2 + k,v: 2 h kv + MLP: 3 h ffn)): h + kv + 1.5 ffn."""
    h = config.hidden_size
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or h // heads
    kv = getattr(config, "num_key_value_heads", heads) * head_dim
    return h + kv + 1.5 * getattr(config, "intermediate_size", 4 * h)


def train_batch(batch: list[Example], pad_id: int, packed: bool = False,
                attention_span: float | None = None, varlen: bool = False) -> TrainBatch:
    """The micro-batch `batch`, padded (one example a row) or packed (several a row, position ids restarting).

    Packed rows are as wide as `row_width` finds cheapest for the attention in use. Padding at the end of a
    packed row gets its own restarting positions: transformers reads a restart as a new sequence
    (masking_utils.find_packed_sequence_indices), so padding and examples never see each other. `varlen`
    (flash-attention): one row, and the sequence boundaries passed as flash-attention's `cu_seq_lens_*` /
    `max_length_*`, computed here on the host (as TRL's collator does) so no layer derives them from
    the position ids with a device-to-host sync."""
    import torch

    lengths = [len(e.input_ids) for e in batch]
    rows = [[e] for e in batch]
    if packed:
        width = row_width(lengths, None if varlen else attention_span)
        rows = [[batch[i] for i in r] for r in pack_rows(lengths, width)]
    width = max(sum(len(e.input_ids) for e in row) for row in rows)
    # flat lists and one tensor each: nested-list conversion costs more than the rest of the batch
    ids, labels, pos, mask, index, targets = [], [], [], [], [], []
    for row in rows:
        start = len(ids)
        for e in row:
            p, n = len(e.prompt_ids), len(e.input_ids)
            # the hidden state at position t predicts the token at t + 1
            index += range(len(ids) + p - 1, len(ids) + n - 1)
            targets += e.completion_ids
            ids += e.input_ids
            labels += [IGNORE] * p + e.completion_ids
            pos += range(n)
        used, tail = len(ids) - start, width - (len(ids) - start)
        mask += [1] * used + [0] * tail
        ids += [pad_id] * tail
        labels += [IGNORE] * tail
        pos += range(tail)
    shape = (len(rows), width)
    inputs = {"input_ids": torch.tensor(ids).view(shape)}
    if packed:
        inputs["position_ids"] = torch.tensor(pos).view(shape)
        if varlen:
            ends = itertools.accumulate(len(e.input_ids) for e in rows[0])  # one row, no padding
            cu = torch.tensor([0, *ends], dtype=torch.int32)
            inputs.update(cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=max(lengths), max_length_k=max(lengths))
    else:
        inputs["attention_mask"] = torch.tensor(mask).view(shape)
    return TrainBatch(inputs, torch.tensor(labels).view(shape), torch.tensor(index), torch.tensor(targets),
                      len(targets), sum(len(e.input_ids) for e in batch))
