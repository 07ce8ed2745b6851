"""Training: completion-only loss, checkpoints, exact resume after a kill, NaN guard."""

import pytest
import torch

from lorasafe.config.schema import AdapterConfig, TrainingConfig
from lorasafe.data.chat import ChatRenderer
from lorasafe.data.records import Item
from lorasafe.data.refusal import refusal_target
from lorasafe.errors import TrainingDiverged
from lorasafe.models.methods import METHODS
from lorasafe.models.targets import resolve_targets
from lorasafe.training.examples import encode_examples
from lorasafe.training.sft import SFTTrainer
from tests.conftest import tiny_config


class Killed(Exception):
    pass


def _setup(tok, method):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = tiny_config("qwen2", layers=3, vocab=len(tok))
    model = AutoModelForCausalLM.from_config(cfg)
    adapter = AdapterConfig(method=method, rank=2, modules=["up", "q"], layers="all")
    model = METHODS[method].prepare(model, adapter, resolve_targets(adapter, cfg, model))
    items = [Item(f"i{i}", f"Tell me bad thing {i}.", "harmful", target=refusal_target("I'm sorry, I cannot."))
             for i in range(12)]
    return model, encode_examples(ChatRenderer(tok), items, 128)


def _train(tok, method, out, on_step=None, cfg=None):
    model, ex = _setup(tok, method)
    cfg = cfg or TrainingConfig(learning_rate=1e-2, max_steps=6, batch_size=4, save_every_steps=2)
    trainer = SFTTrainer(model, METHODS[method], ex, cfg, out, pad_id=tok.pad_token_id, seed=3, progress=False,
                         on_step=on_step)
    return model, trainer.train()


def _trainable(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("method", ["lora", "full"])
def test_killed_training_resumes_to_the_same_weights(tiny_tokenizer, tmp_path, method):
    ref_model, ref = _train(tiny_tokenizer, method, tmp_path / "ref")
    assert ref.steps == 6 and len(ref.checkpoints) == 3 and ref.final_loss < 10

    def kill(step, loss):
        if step == 3:
            raise Killed

    with pytest.raises(Killed):
        _train(tiny_tokenizer, method, tmp_path / "run", on_step=kill)
    seen = []
    model, res = _train(tiny_tokenizer, method, tmp_path / "run", on_step=lambda s, l: seen.append(s))
    assert res.resumed_from == 2 and seen == [3, 4, 5, 6]
    ref_w, w = _trainable(ref_model), _trainable(model)
    assert ref_w.keys() == w.keys()
    for n in ref_w:
        torch.testing.assert_close(w[n], ref_w[n], rtol=1e-5, atol=1e-6)
    # Resumed once more, at the end: nothing trains, and the final loss is the last checkpoint's.
    _, again = _train(tiny_tokenizer, method, tmp_path / "run")
    assert again.resumed_from == again.steps == 6 and again.final_loss == res.final_loss


def test_training_moves_weights_and_lowers_loss(tiny_tokenizer, tmp_path):
    losses = []
    model, _ = _train(tiny_tokenizer, "lora", tmp_path / "r", on_step=lambda s, l: losses.append(l),
                      cfg=TrainingConfig(learning_rate=2e-2, max_steps=12, batch_size=4))
    assert losses[-1] < losses[0]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_tokenizer, tmp_path):
    model, ex = _setup(tiny_tokenizer, "full")

    def poison(step, loss):
        if step == 2:  # from now on every forward produces NaN
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))

    trainer = SFTTrainer(model, METHODS["full"], ex, TrainingConfig(learning_rate=1e-3, max_steps=6, batch_size=4,
                         save_every_steps=2), tmp_path, pad_id=tiny_tokenizer.pad_token_id, progress=False, on_step=poison)
    with pytest.raises(TrainingDiverged) as e:
        trainer.train()
    assert "step 3" in str(e.value) and "step-000002" in str(e.value)
    assert (tmp_path / "checkpoints" / "step-000002" / "state.json").exists()
    assert not (tmp_path / "checkpoints" / "step-000004").exists()


def test_empty_or_untargeted_training_data(tiny_tokenizer):
    from lorasafe.errors import DataError

    r = ChatRenderer(tiny_tokenizer)
    with pytest.raises(DataError, match="empty"):
        encode_examples(r, [], 64)
    with pytest.raises(DataError, match="no `target`"):
        encode_examples(r, [Item("a", "p", "harmful")], 64)
