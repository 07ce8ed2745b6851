"""One base model serves base, several LoRA adapters and full checkpoints, with exact outputs."""

import torch

from lorasafe.config.schema import ModelConfig


def _adapter(base_dir, out, seed, modules):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    m = AutoModelForCausalLM.from_pretrained(base_dir)
    p = get_peft_model(m, LoraConfig(r=2, target_modules=modules, init_lora_weights=False))
    p.save_pretrained(out)
    return p


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_pool_swaps_adapters_and_restores_the_base_exactly(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from lorasafe.models.pool import ModelPool

    ids = torch.tensor([[5, 6, 7, 8, 9]])
    base_ref = _logits(AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), ids)
    a = _logits(_adapter(tiny_model_dir, tmp_path / "a", 1, ["up_proj"]).eval(), ids)
    b = _logits(_adapter(tiny_model_dir, tmp_path / "b", 2, ["q_proj", "down_proj"]).eval(), ids)
    assert not torch.allclose(a, base_ref) and not torch.allclose(a, b)

    pool = ModelPool(ModelConfig(path=str(tiny_model_dir)))
    for method, weights, want in [("none", None, base_ref), ("lora", tmp_path / "a", a), ("lora", tmp_path / "b", b),
                                  ("none", None, base_ref), ("lora", tmp_path / "a", a)]:
        with pool.model_for(method, weights) as m:
            torch.testing.assert_close(_logits(m, ids), want)
    assert pool.loads == 1
    # The in-memory merge for generation leaves the base weights bit for bit as loaded.
    fresh = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    now = {k.replace(".base_layer", ""): w for k, w in pool.base.state_dict().items() if "lora_" not in k}
    assert now.keys() == fresh.keys()
    for name, w in now.items():
        assert torch.equal(w, fresh[name]), name
    assert not any(p.name.endswith(".safetensors") and "merged" in p.name for p in tmp_path.rglob("*"))


def test_pool_full_checkpoint(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from lorasafe.models.pool import ModelPool

    m = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        m.model.layers[0].mlp.up_proj.weight.add_(0.5)
    m.save_pretrained(tmp_path / "full")
    ids = torch.tensor([[3, 4, 5]])
    want = _logits(m.eval(), ids)
    pool = ModelPool(ModelConfig(path=str(tiny_model_dir)))
    with pool.model_for("full", tmp_path / "full") as fm:
        torch.testing.assert_close(_logits(fm, ids), want)
