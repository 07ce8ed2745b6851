"""Generation engines by name (`generation.backend`): the generator, and the model it generates with per variant.

- `hf`: transformers' `generate` in this process, on the shared `ModelPool` (adapters swapped, never merged).
- `openai`: an OpenAI-compatible server (generation/server.py); the base is the served model, a LoRA
  checkpoint is loaded into the server by name for the duration.
- `vllm`: vLLM's offline engine (generation/vllm.py, untested): LoRA checkpoints as `LoRARequest`s.
Both write the same records through the same store, chat rendering, think split and per-batch seeds.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from lorasafe.config.schema import GenerationConfig
from lorasafe.errors import ConfigError
from lorasafe.generation.base import Generator


class Engine(Protocol):
    generator: Generator

    def serving(self, method: str, weights: Path | None) -> AbstractContextManager[Any]:
        """What `generator.generate` takes as its model for this variant (a loaded model, a served name)."""


class HFEngine:
    def __init__(self, ctx: Any, g: GenerationConfig):
        from lorasafe.generation.hf import HFGenerator

        self.ctx = ctx
        self.generator = HFGenerator(ctx.tokenizer, ctx.eos_ids, decode=ctx.renderer.decode)

    def serving(self, method: str, weights: Path | None) -> AbstractContextManager[Any]:
        return self.ctx.pool.model_for(method, weights)


class ServerEngine:
    def __init__(self, ctx: Any, g: GenerationConfig):
        from lorasafe.generation.server import ServerGenerator
        from lorasafe.models.loading import resolve_path

        self.generator = ServerGenerator(g.endpoint, tokenizer=ctx.tokenizer, api_key_env=g.api_key_env,
                                         concurrency=g.concurrency, timeout_s=g.timeout_s, max_retries=g.max_retries)
        self.base_name = g.served_model or resolve_path(ctx.cfg.model.path)

    @contextmanager
    def serving(self, method: str, weights: Path | None) -> Iterator[Any]:
        from lorasafe.generation.server import ServerError

        if method == "none":
            yield self.base_name
        elif method == "lora":
            with self.generator.adapter(Path(weights)) as name:
                yield name
        else:
            raise ServerError(f"A full-fine-tuning checkpoint ({weights}) is a model of its own, which the server at "
                              f"{self.generator.endpoint} does not serve. Serve it (e.g. `vllm serve {weights}`) and "
                              "evaluate it as its own run (model.path: that directory, adapter.method: none, "
                              "generation.served_model: its name), or use generation.backend: hf.")


def _vllm_engine(ctx: Any, g: GenerationConfig) -> Engine:
    from lorasafe.generation.vllm import VLLMEngine  # imported only when chosen

    return VLLMEngine(ctx, g)


ENGINES: dict[str, Callable[[Any, GenerationConfig], Engine]] = {"hf": HFEngine, "openai": ServerEngine,
                                                                 "vllm": _vllm_engine}


def check_engine(g: GenerationConfig) -> None:
    """Before anything runs: the chosen backend's package is installed (building the engine itself would load a
    model, or hold a GPU through training)."""
    if g.backend == "vllm":
        from lorasafe.generation.vllm import _vllm

        _vllm()
    elif g.backend == "openai":
        from lorasafe.generation.server import require_openai

        require_openai()


def make_engine(ctx: Any, g: GenerationConfig) -> Engine:
    """The engine `g.backend` names, for the base model of `ctx` (a BaseContext)."""
    if g.backend not in ENGINES:
        raise ConfigError(f"generation.backend {g.backend!r} is unknown; choose one of: {', '.join(ENGINES)}.")
    return ENGINES[g.backend](ctx, g)
