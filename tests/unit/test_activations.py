"""`training.saved_activations: lean` recomputes SiLU outputs and products from the factors autograd keeps anyway:
the same gradients bit for bit, fewer bytes kept for the backward (fp32, CPU, tiny Qwen2 / Llama / Qwen3)."""

import pytest
import torch

from lorasafe.config.schema import TrainingConfig
from lorasafe.models.methods import METHODS
from lorasafe.training.accel import enable_checkpointing
from lorasafe.training.activations import LeanActivations, saved_activations
from lorasafe.training.examples import train_batch
from lorasafe.training.loss import CompletionLoss
from lorasafe.training.sft import SFTTrainer
from tests.unit.test_packing import ARCHS, _examples, _grads, _model


class Kept:
    """Hooks that store everything and count the bytes of what they store (a storage once)."""

    def __init__(self, inner=None):
        self.inner, self.storages = inner, {}

    def pack(self, t):
        packed = self.inner.pack(t) if self.inner else t
        if packed is t and t.grad_fn is not None:  # an activation (weights are kept by the model anyway)
            self.storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return packed

    def unpack(self, x):
        return self.inner.unpack(x) if self.inner else x

    @property
    def bytes(self):
        return sum(self.storages.values())


def _backward(model, batch, hooks, twice=False):
    model.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(hooks.pack, hooks.unpack):
        loss = CompletionLoss(model, 7)(batch)
    loss.backward(retain_graph=twice)
    if twice:  # a graph kept for a second backward recomputes on every read
        loss.backward()
    return loss.item(), _grads(model)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", ["lora", "full"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_lean_gives_the_same_gradients_bit_for_bit_and_keeps_less(tiny_tokenizer, arch, method, checkpointing):
    model = _model(tiny_tokenizer, arch, method, layers=3)
    if checkpointing:  # its own hooks take over inside each decoder layer
        enable_checkpointing(model)
    model.train()
    batch = train_batch(_examples(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    kept_all, lean = Kept(), LeanActivations()
    kept_lean = Kept(lean)
    ref_loss, ref = _backward(model, batch, kept_all)
    loss, grads = _backward(model, batch, kept_lean)
    assert loss == ref_loss and grads.keys() == ref.keys() and grads
    assert all(torch.equal(grads[n], ref[n]) for n in ref)
    if checkpointing:  # nothing is left to recompute outside the layers but the final norm
        assert lean.recomputed <= 2
        return
    layers = model.config.num_hidden_layers
    # every layer: the SiLU's output (read by the gate product); full FT also SwiGLU's product (down_proj) and both
    # norms' normalised (their weight's product) and output states (q, k, v; gate, up), Qwen3 its q/k norms' too
    assert lean.recomputed >= (layers if method == "lora" else 9 * layers)
    assert kept_lean.bytes < (0.9 if method == "lora" else 0.7) * kept_all.bytes
    # a second backward through a kept graph reads every recipe again
    _, ref2 = _backward(model, batch, Kept(), twice=True)
    _, grads2 = _backward(model, batch, LeanActivations(), twice=True)
    assert all(torch.equal(grads2[n], ref2[n]) for n in ref2)


def test_a_model_without_silu_or_products_stores_what_it_stored():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                       activation_function="relu"))
    ids = torch.randint(0, 64, (2, 16))
    lean = LeanActivations()
    with torch.autograd.graph.saved_tensors_hooks(lean.pack, lean.unpack):
        model(input_ids=ids, labels=ids).loss.backward()
    assert lean.recomputed == 0 and lean.stored > 0


def test_trainer_runs_lean_by_default_with_the_losses_and_weights_of_all(tiny_tokenizer, tmp_path):
    ex = _examples(tiny_tokenizer, 8)

    def train(name, **kw):
        seen = []
        model = _model(tiny_tokenizer, "qwen2", "full", layers=2)
        cfg = TrainingConfig(learning_rate=1e-2, max_steps=3, batch_size=4, **kw)
        res = SFTTrainer(model, METHODS["full"], ex, cfg, tmp_path / name, pad_id=tiny_tokenizer.pad_token_id,
                         progress=False, on_step=lambda s, l: seen.append(l)).train()
        return seen, res.setup["saved_activations"], model.state_dict()

    lean_losses, lean_setup, lean_w = train("lean")
    all_losses, all_setup, all_w = train("all", saved_activations="all")
    assert (lean_setup, all_setup) == ("lean", "all")
    assert lean_losses == all_losses
    assert all(torch.equal(lean_w[k], all_w[k]) for k in all_w)


def test_compile_keeps_everything_and_the_choice_is_not_a_runs_identity():
    from lorasafe.config.loader import config_hash
    from lorasafe.config.schema import ExperimentConfig

    assert saved_activations("lean", compiled=True)[1].startswith("all")
    assert saved_activations("all")[1] == "all" and saved_activations("lean")[1] == "lean"
    assert TrainingConfig().saved_activations == "lean" and "saved_activations" not in TrainingConfig().model_dump()
    assert config_hash(ExperimentConfig(training={"saved_activations": "all"})) == config_hash(ExperimentConfig())
