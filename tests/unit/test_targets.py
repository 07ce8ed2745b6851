import pytest

from lorasafe.config.schema import AdapterConfig, LayerRange
from lorasafe.errors import TargetError
from lorasafe.models.targets import layer_band, resolve_targets
from tests.conftest import tiny_config


def test_48_layer_up_16_31_is_exactly_16_modules():
    cfg = tiny_config("qwen2", layers=48)
    plan = resolve_targets(AdapterConfig(rank=1, modules=["up"], layers=LayerRange(first=16, last=31)), cfg)
    assert len(plan.modules) == 16
    assert plan.modules[0] == "model.layers.16.mlp.up_proj" and plan.modules[-1] == "model.layers.31.mlp.up_proj"
    assert plan.trainable_params == 16 * (32 + 48)
    assert layer_band("middle", 48) == list(range(16, 32))


def test_bands_split_in_thirds():
    assert layer_band("early", 6) == [0, 1] and layer_band("middle", 6) == [2, 3] and layer_band("late", 6) == [4, 5]
    assert layer_band("late", 7) == [4, 5, 6] and layer_band("all", 3) == [0, 1, 2]


def test_range_outside_model_is_an_error():
    with pytest.raises(TargetError, match="0..5"):
        resolve_targets(AdapterConfig(layers=LayerRange(first=4, last=9)), tiny_config("qwen2", layers=6))


def test_unknown_architecture_is_an_error():
    cfg = tiny_config("qwen2")
    cfg.model_type = "mystery"
    with pytest.raises(TargetError, match="register_family"):
        resolve_targets(AdapterConfig(), cfg)


@pytest.mark.parametrize("model_type", ["qwen2", "llama", "qwen3"])
@pytest.mark.parametrize("adapter", [
    AdapterConfig(rank=1, modules=["up"], layers="middle"),
    AdapterConfig(rank=2, modules=["gate", "up", "down"], layers="all"),
    AdapterConfig(rank=8, modules=["q", "k", "v", "o", "gate", "up", "down"], layers="all"),
    AdapterConfig(rank=1, modules=["down"], layers=LayerRange(first=1, last=3)),
])
def test_plan_matches_what_peft_trains(model_type, adapter):
    """The dry-run count equals the real PEFT model's trainable parameters, module for module."""
    import torch
    from transformers import AutoModelForCausalLM

    from lorasafe.models.methods import METHODS

    cfg = tiny_config(model_type)
    plan = resolve_targets(adapter, cfg)
    torch.manual_seed(0)
    model = METHODS["lora"].prepare(AutoModelForCausalLM.from_config(cfg), adapter, plan)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == plan.trainable_params
    assert len(plan.modules) == len(adapter.modules) * len(plan.layers)


@pytest.mark.parametrize("model_type", ["qwen2", "llama", "qwen3"])
def test_full_and_none(model_type):
    cfg = tiny_config(model_type)
    full = resolve_targets(AdapterConfig(method="full"), cfg)
    assert full.trainable_params == full.total_params > 0
    assert resolve_targets(AdapterConfig(method="none"), cfg).trainable_params == 0
