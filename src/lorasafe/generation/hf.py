"""The HF-transformers generation backend: batched, left-padded, KV cache, greedy or seeded sampling."""

from __future__ import annotations

from typing import Any, Callable

from lorasafe.generation.base import Completion, SamplingParams


class HFGenerator:
    """Generates with `model.generate` on whatever model (base, PEFT-wrapped, full) it is given."""

    def __init__(self, tokenizer: Any, eos_token_ids: list[int], decode: Callable[[list[int]], str] | None = None):
        self.tokenizer = tokenizer
        self.eos = list(eos_token_ids)
        # How generated ids become text: by default special tokens are dropped; a chat renderer whose
        # thinking markers are special tokens (gpt-oss's channels) passes its own `decode` to keep them.
        self.decode = decode or (lambda ids: tokenizer.decode(ids, skip_special_tokens=True))

    def generate(self, model: Any, prompts: list[str], params: SamplingParams) -> list[Completion]:
        import torch

        tok = self.tokenizer
        side = tok.padding_side
        tok.padding_side = "left"  # decoder-only batching: pad before the prompt, not after it
        try:
            enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            tok.padding_side = side
        device = next(model.parameters()).device
        enc = {k: v.to(device) for k, v in enc.items()}
        kwargs: dict[str, Any] = dict(max_new_tokens=params.max_new_tokens, eos_token_id=self.eos,
                                      pad_token_id=tok.pad_token_id, use_cache=True)
        if params.temperature > 0:
            torch.manual_seed(params.seed)
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        was_training = model.training
        model.eval()
        with torch.inference_mode():
            out = model.generate(**enc, **kwargs)
        if was_training:
            model.train()
        new = out[:, enc["input_ids"].shape[1]:]
        results = []
        for row in new.tolist():
            ended = next((i for i, t in enumerate(row) if t in self.eos), None)
            body = row if ended is None else row[:ended]
            body = [t for t in body if t != tok.pad_token_id]
            results.append(Completion(self.decode(body), len(body), ended is None))
        return results
