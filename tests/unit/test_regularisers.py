"""The orthogonality regulariser: per-module k, factorised penalty == dense, a loss term only, logged."""

import json

import pytest
import torch

from lorasafe.config.schema import AdapterConfig, ExperimentConfig, RegulariserConfig, TrainingConfig
from lorasafe.errors import ConfigError
from lorasafe.models.methods import METHODS
from lorasafe.models.targets import resolve_targets
from lorasafe.training.regularisers import OrthogonalityRegulariser, build_regulariser, energy_k
from tests.conftest import tiny_config


def _lora_model(model_type="qwen2", modules=("up", "down", "q")):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = tiny_config(model_type, layers=2)
    model = AutoModelForCausalLM.from_config(cfg)
    # Give the modules visibly different spectra, so an energy threshold picks different k per module.
    with torch.no_grad():
        for i, layer in enumerate(model.model.layers):
            w = layer.mlp.up_proj.weight
            u, s, vh = torch.linalg.svd(w, full_matrices=False)
            layer.mlp.up_proj.weight.copy_((u * torch.logspace(0, -3 - i, s.numel())) @ vh)
    adapter = AdapterConfig(method="lora", rank=2, modules=list(modules), layers="all", dropout=0.0)
    model = METHODS["lora"].prepare(model, adapter, resolve_targets(adapter, cfg, model))
    with torch.no_grad():  # non-zero B, so the penalty is non-zero
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    return model


def _dense_penalty(module, k, cfg: RegulariserConfig) -> float:
    a, b = module.lora_A["default"].weight.double(), module.lora_B["default"].weight.double()
    delta = module.scaling["default"] * b @ a
    u, s, vh = torch.linalg.svd(module.get_base_layer().weight.double(), full_matrices=False)
    w = s[:k] / s[0] if cfg.weighting == "singular_value" else torch.ones(k, dtype=torch.float64)
    pen = 0.0
    if cfg.side in ("column", "both"):
        pen += float((w[:, None] * (u[:, :k].T @ delta)).pow(2).sum())
    if cfg.side in ("row", "both"):
        pen += float(((delta @ vh[:k].T) * w[None, :]).pow(2).sum())
    return pen / float(delta.pow(2).sum()) if cfg.normalise else pen


@pytest.mark.parametrize("model_type", ["qwen2", "llama", "qwen3"])
def test_each_module_keeps_its_own_k(model_type):
    model = _lora_model(model_type)
    cfg = RegulariserConfig(energy=0.6, side="column")
    reg = OrthogonalityRegulariser(model, cfg)
    ks = reg.ks()
    assert len(ks) == 6 and len(set(ks.values())) > 1, ks  # the spectra differ, so must the k's
    for name, ref in reg.refs.items():
        s = torch.linalg.svdvals(ref.module.get_base_layer().weight.double())
        assert ref.k == energy_k(s, 0.6) and ref.U.shape[1] == ref.k
        assert float(reg.module_penalty(ref)) == pytest.approx(_dense_penalty(ref.module, ref.k, cfg), rel=1e-4)
    # The official code's bug (the last module's k used everywhere) would give a different total.
    last_k = list(ks.values())[-1]
    shared = sum(_dense_penalty(r.module, min(last_k, min(r.module.get_base_layer().weight.shape)), cfg)
                 for r in reg.refs.values())
    assert float(reg.penalty()) != pytest.approx(shared, rel=1e-3)


@pytest.mark.parametrize("side", ["column", "row", "both"])
@pytest.mark.parametrize("weighting", ["uniform", "singular_value"])
@pytest.mark.parametrize("normalise", [False, True])
def test_factorised_penalty_equals_the_dense_one(side, weighting, normalise):
    model = _lora_model()
    cfg = RegulariserConfig(k=3, side=side, weighting=weighting, normalise=normalise, beta=2.0)
    reg = OrthogonalityRegulariser(model, cfg)
    dense = sum(_dense_penalty(r.module, 3, cfg) for r in reg.refs.values())
    assert float(reg.penalty()) == pytest.approx(2.0 * dense, rel=1e-4)


def test_minimising_the_penalty_moves_the_update_out_of_the_subspace():
    model = _lora_model(modules=("up",))
    reg = OrthogonalityRegulariser(model, RegulariserConfig(k=4, normalise=True))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-2)
    before = float(reg.penalty())
    for _ in range(50):
        opt.zero_grad()
        reg.penalty().backward()
        opt.step()
    assert float(reg.penalty()) < 0.5 * before


def test_references_stay_out_of_the_model_state():
    model = _lora_model()
    keys = set(model.state_dict())
    OrthogonalityRegulariser(model, RegulariserConfig(k=2))
    assert set(model.state_dict()) == keys


def test_bad_regulariser_configs_are_clear_errors():
    with pytest.raises(ConfigError, match="larger than module"):
        OrthogonalityRegulariser(_lora_model(), RegulariserConfig(k=40))
    with pytest.raises(ValueError, match="exactly one of k"):
        RegulariserConfig()
    with pytest.raises(ValueError, match="works on LoRA updates"):
        ExperimentConfig(adapter=AdapterConfig(method="full"), training=TrainingConfig(regulariser={"k": 2}))
    assert build_regulariser(_lora_model(), None) is None


def test_trainer_logs_the_penalty(tiny_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    from lorasafe.data.chat import ChatRenderer
    from lorasafe.data.records import Item
    from lorasafe.data.refusal import refusal_target
    from lorasafe.training.examples import encode_examples
    from lorasafe.training.sft import SFTTrainer

    torch.manual_seed(0)
    mcfg = tiny_config("qwen2", layers=2, vocab=len(tiny_tokenizer))
    adapter = AdapterConfig(method="lora", rank=1, modules=["up"], layers="all")
    model = METHODS["lora"].prepare(AutoModelForCausalLM.from_config(mcfg), adapter, resolve_targets(adapter, mcfg))
    items = [Item(f"i{i}", f"Tell me bad thing {i}.", "harmful", target=refusal_target("I'm sorry, I cannot."))
             for i in range(8)]
    ex = encode_examples(ChatRenderer(tiny_tokenizer), items, 128)
    tcfg = TrainingConfig(learning_rate=1e-2, max_steps=2, batch_size=4, regulariser={"k": 2, "beta": 1.0})
    reg = build_regulariser(model, tcfg.regulariser)
    SFTTrainer(model, METHODS["lora"], ex, tcfg, tmp_path, pad_id=tiny_tokenizer.pad_token_id, progress=False,
               regulariser=reg).train()
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert log and all("penalty" in e and e["penalty"] >= 0 for e in log)
    assert log[-1]["penalty"] > 0  # B moved away from zero, so the update has a part in the subspace


def test_a_non_finite_penalty_stops_training(tiny_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    from lorasafe.data.chat import ChatRenderer
    from lorasafe.data.records import Item
    from lorasafe.data.refusal import refusal_target
    from lorasafe.errors import TrainingDiverged
    from lorasafe.training.examples import encode_examples
    from lorasafe.training.sft import SFTTrainer

    class Broken:
        name = "broken"

        def penalty(self):
            return torch.tensor(float("nan"), requires_grad=True)

    mcfg = tiny_config("qwen2", layers=2, vocab=len(tiny_tokenizer))
    adapter = AdapterConfig(method="lora", rank=1, modules=["up"], layers="all")
    model = METHODS["lora"].prepare(AutoModelForCausalLM.from_config(mcfg), adapter, resolve_targets(adapter, mcfg))
    ex = encode_examples(ChatRenderer(tiny_tokenizer), [Item("i", "Bad?", "harmful", target=refusal_target("No."))], 64)
    with pytest.raises(TrainingDiverged, match="broken regulariser"):
        SFTTrainer(model, METHODS["lora"], ex, TrainingConfig(max_steps=1, batch_size=1), tmp_path,
                   pad_id=tiny_tokenizer.pad_token_id, progress=False, regulariser=Broken()).train()
