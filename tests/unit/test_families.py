"""Model families: per family, a tiny random model built from the family's real config and chat files
trains one LoRA step, generates, and its output splits into thinking and answer.

Families: DeepSeek-R1-Distill-Qwen and -Llama (generation prompt opens `<think>\\n`), Qwen3 with
`enable_thinking` on and off, SmolLM2 (no thinking in its template: the contract is lorasafe's and is
recorded), gpt-oss (harmony channels; MoE experts adapted through PEFT's target_parameters).
"""

from __future__ import annotations

import pytest

from lorasafe.config.schema import AdapterConfig
from lorasafe.data.chat import ChatRenderer, ThinkFormat
from lorasafe.data.records import Item
from lorasafe.data.refusal import refusal_target
from lorasafe.models.families import CHAT_STYLES, MODEL_FAMILIES, family_for
from lorasafe.models.targets import resolve_targets
from tests.fixtures.tokenizers.build import fixtures, tiny_config, tokenizer

FIXTURES = fixtures()
REFUSAL = "I'm sorry, but I cannot help with that request."
TARGET = refusal_target(REFUSAL)
PROMPT = "Tell me how to pick a lock."


def _setup(name: str):
    fx = FIXTURES[name]
    tok = tokenizer(fx)
    return fx, tok, ChatRenderer(tok, ThinkFormat(enable_thinking=fx.enable_thinking))


def _eos_ids(tok, renderer) -> list[int]:
    """As BaseContext.eos_ids: the tokenizer's EOS and the template's end-of-turn token."""
    ids = {tok.eos_token_id, tok.convert_tokens_to_ids(renderer.end_of_turn)}
    return sorted(i for i in ids if isinstance(i, int) and i != tok.unk_token_id)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_template_matches_the_declared_chat_style(name):
    fx, tok, renderer = _setup(name)
    style = CHAT_STYLES[fx.style]
    assert style.differences(renderer.describe()) == []
    # Earlier assistant turns: R1-Distill, Qwen3 and harmony drop their thinking; SmolLM2 keeps the contract's text.
    earlier = renderer._assistant("I should not answer this question!", REFUSAL)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}, earlier, {"role": "user", "content": PROMPT}],
                                   tokenize=False, add_generation_prompt=True, **renderer.kwargs)
    assert ("I should not answer this question!" in text) == style.history_thinking
    assert REFUSAL in text


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_family_trains_one_lora_step_generates_and_splits(name):
    import torch
    from transformers import AutoModelForCausalLM

    from lorasafe.generation.base import SamplingParams
    from lorasafe.generation.hf import HFGenerator
    from lorasafe.models.methods import METHODS
    from lorasafe.training.examples import collate, encode_examples

    fx, tok, renderer = _setup(name)
    cfg = tiny_config(fx, tok)
    assert family_for(cfg.model_type)  # an architecture lorasafe knows
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg)
    adapter = AdapterConfig(rank=1, modules=list(fx.modules), layers="all", dropout=0.0)
    plan = resolve_targets(adapter, cfg)
    peft = METHODS["lora"].prepare(model, adapter, plan)
    trainable = [p for p in peft.parameters() if p.requires_grad]
    assert sum(p.numel() for p in trainable) == plan.trainable_params > 0

    examples = encode_examples(renderer, [Item("x", PROMPT, "harmful", target=TARGET)], max_length=512)
    batch = collate(examples, tok.pad_token_id)
    before = [p.detach().clone() for p in trainable]
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    loss = peft(**batch).loss
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainable))  # the step moved the adapter

    # Generation through the pipeline's generator; a random model's text still splits into the ThinkSplit shape.
    out = HFGenerator(tok, _eos_ids(tok, renderer)).generate(peft, [renderer.prompt(PROMPT)], SamplingParams(8, 0.0, 1.0, 0))
    split = renderer.split_output(out[0].text)
    assert out[0].n_tokens <= 8
    if renderer.prefill and not renderer.thinking_off:  # R1: the prompt opened the thinking block
        assert split.thinking is not None
    if renderer.thinking_off:  # Qwen3 no-think: the empty block is closed before the model speaks
        assert split.thinking == "" and split.closed


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_memorised_refusal_generates_and_splits_into_thinking_and_answer(name):
    """A model that learned the target generates it, and the split recovers the thinking and the answer."""
    import torch
    from transformers import AutoModelForCausalLM

    from lorasafe.training.examples import collate, encode_examples

    fx, tok, renderer = _setup(name)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config(fx, tok, layers=2))
    batch = collate(encode_examples(renderer, [Item("x", PROMPT, "harmful", target=TARGET)], 512), tok.pad_token_id)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert loss.item() < 0.05
    model.eval()
    prompt_ids = torch.tensor([renderer.encode_prompt(PROMPT)])
    with torch.no_grad():
        out = model.generate(prompt_ids, attention_mask=torch.ones_like(prompt_ids), max_new_tokens=60,
                             do_sample=False, eos_token_id=_eos_ids(tok, renderer), pad_token_id=tok.pad_token_id)
    new = out[0, prompt_ids.shape[1]:].tolist()
    assert new[-1] in _eos_ids(tok, renderer)
    # renderer.decode keeps the split markers' own special tokens (harmony's channels); for the other families it
    # equals the generator's skip_special_tokens decode.
    text = renderer.decode(new[:-1])
    if fx.style != "harmony":
        assert text == tok.decode(new[:-1], skip_special_tokens=True)
    split = renderer.split_output(text)
    assert split.answer == REFUSAL and split.closed
    assert split.thinking == ("" if renderer.thinking_off else "I should not answer this question!")


def test_every_model_family_names_a_known_architecture_and_chat_style():
    for fam in MODEL_FAMILIES.values():
        assert family_for(fam.model_type) and fam.chat in CHAT_STYLES


def test_moe_expert_parameters_counted_by_hand():
    """gpt-oss-20b (configs/models): rank 1 on the fused expert gate_up weights of the middle 8 layers (8..15).
    Each layer's (32 experts, 2880, 5760) tensor gets one rank-1 pair per expert: 32 * (2880 + 5760) = 276,480."""
    from transformers import AutoConfig

    from tests.fixtures.tokenizers.build import CONFIGS

    cfg = AutoConfig.from_pretrained(CONFIGS / "gpt-oss-20b")
    plan = resolve_targets(AdapterConfig(rank=1, modules=["experts_gate_up"], layers="middle", dropout=0.0), cfg)
    assert plan.layers == list(range(8, 16)) and plan.modules == []
    assert plan.parameters[0] == "model.layers.8.mlp.experts.gate_up_proj"
    assert plan.shapes[plan.parameters[0]] == (32, 2880, 5760)
    assert plan.trainable_params == 8 * 32 * (2880 + 5760) == 2_211_840
    down = resolve_targets(AdapterConfig(rank=2, modules=["experts_down"], layers="middle", dropout=0.0), cfg)
    assert down.trainable_params == 8 * 2 * 32 * (2880 + 2880) == 2_949_120


def test_moe_tiny_qwen3_moe_matches_peft():
    import torch
    from transformers import AutoModelForCausalLM, Qwen3MoeConfig

    from lorasafe.models.methods import METHODS

    cfg = Qwen3MoeConfig(vocab_size=300, hidden_size=32, intermediate_size=48, moe_intermediate_size=24,
                         num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                         num_experts=4, num_experts_per_tok=2)
    adapter = AdapterConfig(rank=2, modules=["q", "experts_gate_up", "experts_down"], layers="all", dropout=0.0)
    plan = resolve_targets(adapter, cfg)
    # q: 3 * 2 * (32 + 32); gate_up (4, 48, 32): 3 * 2 * 4 * (48 + 32); down (4, 32, 24): 3 * 2 * 4 * (32 + 24)
    assert plan.trainable_params == 384 + 1920 + 1344
    torch.manual_seed(0)
    model = METHODS["lora"].prepare(AutoModelForCausalLM.from_config(cfg), adapter, plan)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == plan.trainable_params


def test_expert_targets_refuse_dropout_and_dense_names():
    from transformers import Qwen3MoeConfig

    from lorasafe.errors import TargetError

    cfg = Qwen3MoeConfig(vocab_size=300, hidden_size=32, intermediate_size=48, moe_intermediate_size=24,
                         num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                         num_experts=4, num_experts_per_tok=2)
    with pytest.raises(TargetError, match="dropout"):
        resolve_targets(AdapterConfig(modules=["experts_down"], dropout=0.05), cfg)
    with pytest.raises(TargetError, match="up_proj"):  # no dense MLP in a sparse layer
        resolve_targets(AdapterConfig(modules=["up"]), cfg)
