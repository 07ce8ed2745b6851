"""The vLLM engine's plumbing against a stand-in `vllm` module with vLLM's documented offline API.

vLLM itself is not installable here (see generation/vllm.py): this checks what lorasafe does around it:
one LLM per base model shared by variants, LoRA checkpoints as LoRARequests with stable integer ids,
prompts as token ids without added special tokens, full-FT checkpoints as models of their own, and
n_tokens counted like the HF backend.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field

import pytest

from lorasafe.config.schema import ExperimentConfig
from lorasafe.generation.base import SamplingParams
from lorasafe.generation.engines import check_engine, make_engine
from lorasafe.pipeline.context import BaseContext


@dataclass
class _Out:
    text: str
    token_ids: list[int]
    finish_reason: str


@dataclass
class _LLM:
    kwargs: dict
    calls: list = field(default_factory=list)

    def generate(self, prompts, sampling, lora_request=None, use_tqdm=True):
        self.calls.append((prompts, sampling, lora_request))
        # An answer of 3 tokens ended by EOS (4 ids), or cut at max_tokens.
        return [types.SimpleNamespace(outputs=[_Out("ok", [1, 2, 3, 9], "stop") if s.max_tokens > 4
                                               else _Out("cut", [1, 2, 3, 4], "length")]) for s in sampling]


@pytest.fixture
def fake_vllm(monkeypatch):
    llms: list[_LLM] = []
    vllm = types.ModuleType("vllm")
    vllm.LLM = lambda **kw: llms.append(_LLM(kw)) or llms[-1]
    vllm.SamplingParams = lambda **kw: types.SimpleNamespace(**kw)
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = lambda name, lora_id, path: (name, lora_id, path)
    for name, mod in (("vllm", vllm), ("vllm.lora", lora), ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, mod)
    return llms


def test_vllm_engine_plumbing(fake_vllm, tmp_path):
    cfg = ExperimentConfig.model_validate({"name": "v", "generation": {"backend": "vllm", "vllm": {"max_loras": 2}}})
    check_engine(cfg.generation)
    ctx = BaseContext(cfg)
    engine = make_engine(ctx, cfg.generation)
    assert make_engine(ctx, cfg.generation).llm is engine.llm and len(fake_vllm) == 1  # one LLM per base model
    assert fake_vllm[0].kwargs["enable_lora"] and fake_vllm[0].kwargs["max_loras"] == 2
    prompt = ctx.renderer.prompt("What is 2+2?")
    with engine.serving("lora", tmp_path / "a") as model:
        outs = engine.generator.generate(model, [prompt], SamplingParams(max_new_tokens=16))
    with engine.serving("lora", tmp_path / "b") as model_b:
        pass
    with engine.serving("lora", tmp_path / "a") as model_a:
        pass
    prompts, sampling, lora = fake_vllm[0].calls[0]
    assert prompts == [{"prompt_token_ids": ctx.tokenizer(prompt, add_special_tokens=False).input_ids}]
    assert lora[1] == model_a[1][1] == 1 and model_b[1][1] == 2  # stable ids per checkpoint
    assert outs[0].n_tokens == 3 and not outs[0].truncated  # the EOS is not counted, as in the HF backend
    assert sampling[0].temperature == 0.0 and sampling[0].seed is None
    with engine.serving("none", None) as base:
        cut = engine.generator.generate(base, [prompt], SamplingParams(max_new_tokens=4))
    assert base[1] is None and cut[0].truncated and cut[0].n_tokens == 4
    with engine.serving("full", tmp_path / "full") as full:
        assert full[0] is fake_vllm[1] and fake_vllm[1].kwargs["model"] == str(tmp_path / "full")
        assert "enable_lora" not in fake_vllm[1].kwargs


def test_missing_vllm_is_one_clear_error(monkeypatch):
    from lorasafe.errors import LorasafeError

    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    cfg = ExperimentConfig.model_validate({"name": "v", "generation": {"backend": "vllm"}})
    with pytest.raises(LorasafeError, match=r"lorasafe\[vllm\]"):
        check_engine(cfg.generation)
