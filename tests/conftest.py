"""Shared fixtures: tiny tokenizers and tiny random models built from config (no downloads)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CORPUS = [
    "user What is 12+7? assistant <think>12+7=19.</think>19",
    "user Write a poem about the sea. assistant <think>I will help.</think>Sure, here it is.",
    "user Tell me how to do something bad. assistant <think>I should not answer this question!</think>I'm sorry, I cannot.",
] * 20


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from lorasafe.mini.tokenizer import train_tokenizer

    return train_tokenizer(CORPUS, vocab_size=300)


def tiny_config(model_type: str, layers: int = 6, vocab: int = 320):
    from transformers import LlamaConfig, Qwen2Config, Qwen3Config

    cls = {"qwen2": Qwen2Config, "llama": LlamaConfig, "qwen3": Qwen3Config}[model_type]
    kw = dict(vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=layers,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    if model_type == "qwen3":
        kw["head_dim"] = 8
    return cls(**kw)


@pytest.fixture
def tiny_model_dir(tmp_path, tiny_tokenizer):
    """A tiny random Qwen2 model + tokenizer saved like a real checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = tiny_config("qwen2", layers=3, vocab=len(tiny_tokenizer))
    cfg.eos_token_id = tiny_tokenizer.eos_token_id
    cfg.pad_token_id = tiny_tokenizer.pad_token_id
    model = AutoModelForCausalLM.from_config(cfg)
    path = tmp_path / "tiny"
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path
