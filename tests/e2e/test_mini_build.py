"""`lorasafe mini build` runs its whole recipe (tokenizer, model, training, evaluation, save) at toy size."""

import json

from lorasafe.config.loader import load_config
from lorasafe.mini.build import MiniBuildConfig, build_mini


def test_toy_build_writes_a_loadable_qwen2_with_its_report(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = load_config(MiniBuildConfig, data={
        "hidden_size": 32, "intermediate_size": 64, "num_layers": 3, "vocab_size": 400,
        "reasoning_train": {"arithmetic": 64, "maximum": 64}, "text_repeats": 1,
        "training": {"learning_rate": 1e-3, "max_steps": 3, "batch_size": 16, "save_every_steps": 2, "max_length": 256},
    })
    out = tmp_path / "model"
    report = build_mini(out, cfg, work_dir=tmp_path / "work", progress=False)
    assert report["steps"] == 3 and report["world"]["eval"] == 120
    assert set(report["heldout"]) == {"reasoning-eval", "harmful-eval", "benign-eval"}
    assert json.loads((out / "build_report.json").read_text())["recipe"]["seed"] == 0
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert type(model).__name__ == "Qwen2ForCausalLM" and model.config.num_hidden_layers == 3
    assert "<think>" in tok.chat_template and (out / "model.safetensors").exists()
    assert tok.convert_tokens_to_ids("<think>") != tok.unk_token_id
    # digits are one token each, so arithmetic is learnable
    assert tok.tokenize("123") == ["1", "2", "3"]
