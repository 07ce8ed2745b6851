"""The vLLM offline backend (`generation.backend: vllm`). UNTESTED against vLLM itself: vLLM needs a CUDA GPU
(or a from-source CPU build), and neither this project's CPU machines nor the lent GPU image have it (its
wheel is larger than what can be carried there). tests/unit/test_vllm_engine.py checks the plumbing
against a stand-in module with vLLM's documented API (LLM, SamplingParams, LoRARequest); until a run
on vLLM compares its records with `backend: hf`, treat this path as a draft.

One `vllm.LLM` per base model, LoRA enabled (`max_lora_rank` from the run's adapter, `max_loras` from
`generation.vllm.max_loras`), shared by every variant of a study; each LoRA checkpoint is passed as a
`LoRARequest` (never merged), the base without one, and a full-fine-tuning checkpoint is loaded as a
model of its own for its suites and released after. Prompts go in as token ids (lorasafe's rendering,
no special tokens added twice); outputs come back with special tokens kept only where the chat
renderer needs them (gpt-oss channels), as in the HF backend. Imported only when chosen.
"""

from __future__ import annotations

import gc
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from lorasafe.errors import require
from lorasafe.generation.base import Completion, SamplingParams


def _vllm() -> Any:
    return require("vllm", "generation.backend: vllm", "pip install 'lorasafe[vllm]' on a Linux machine with a CUDA GPU "
                   "(vLLM's CPU build is installed from source), or use generation.backend: hf or openai")


class VLLMGenerator:
    """`generate(model, ...)` takes (llm, lora_request or None) from `VLLMEngine.serving`."""

    def __init__(self, tokenizer: Any, keep_special_tokens: bool):
        self.tokenizer = tokenizer
        self.keep_special = keep_special_tokens

    def generate(self, model: Any, prompts: list[str], params: SamplingParams) -> list[Completion]:
        vllm = _vllm()
        llm, lora = model
        ids = [self.tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
        # One seed per prompt from the batch seed and the prompt itself: reproducible on resume, distinct per row.
        sampling = [vllm.SamplingParams(max_tokens=params.max_new_tokens, temperature=params.temperature,
                                        top_p=params.top_p, skip_special_tokens=not self.keep_special,
                                        seed=(params.seed + zlib.crc32(p.encode())) if params.temperature > 0 else None)
                    for p in prompts]
        outs = llm.generate([{"prompt_token_ids": x} for x in ids], sampling, lora_request=lora, use_tqdm=False)
        results = []
        for out in outs:
            o = out.outputs[0]
            truncated = o.finish_reason == "length"
            # n_tokens without the end token, as the HF backend counts.
            results.append(Completion(o.text, len(o.token_ids) - (not truncated), truncated))
        return results


class VLLMEngine:
    def __init__(self, ctx: Any, g: Any):
        vllm = _vllm()
        self.ctx, self.g = ctx, g
        self.generator = VLLMGenerator(ctx.tokenizer, keep_special_tokens=ctx.renderer.describe().get("carrier") != "content")
        self._vllm = vllm
        shared = ctx.__dict__.setdefault("_vllm_llms", {})  # one engine per base model, shared by a study's variants
        key = (g.vllm.model_dump_json(), ctx.cfg.model.precision)
        if key not in shared:
            shared[key] = self._llm(self._base_path(), enable_lora=True)
        self.llm = shared[key]
        self._ids: dict[str, int] = ctx.__dict__.setdefault("_vllm_lora_ids", {})

    def _base_path(self) -> str:
        from lorasafe.models.loading import resolve_path

        return resolve_path(self.ctx.cfg.model.path)

    def _llm(self, path: str, enable_lora: bool) -> Any:
        v = self.g.vllm
        dtype = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[self.ctx.cfg.model.precision]
        kw: dict[str, Any] = dict(model=path, dtype=dtype, tensor_parallel_size=v.tensor_parallel_size,
                                  gpu_memory_utilization=v.gpu_memory_utilization, seed=0,
                                  trust_remote_code=self.ctx.cfg.model.trust_remote_code)
        if v.data_parallel_size > 1:
            kw["data_parallel_size"] = v.data_parallel_size
        if v.max_model_len:
            kw["max_model_len"] = v.max_model_len
        if enable_lora:
            kw.update(enable_lora=True, max_loras=v.max_loras, max_lora_rank=v.max_lora_rank)
        return self._vllm.LLM(**kw)

    @contextmanager
    def serving(self, method: str, weights: Path | None) -> Iterator[Any]:
        if method == "none":
            yield (self.llm, None)
        elif method == "lora":
            from vllm.lora.request import LoRARequest

            path = str(Path(weights).resolve())
            lora_id = self._ids.setdefault(path, len(self._ids) + 1)  # vLLM caches adapters by integer id
            yield (self.llm, LoRARequest(f"lorasafe-{lora_id}", lora_id, path))
        else:
            llm = self._llm(str(weights), enable_lora=False)
            try:
                yield (llm, None)
            finally:
                del llm
                gc.collect()
                try:
                    import torch

                    torch.cuda.empty_cache()
                except Exception:  # noqa: BLE001 - freeing memory is best effort
                    pass
