"""`training.saved_activations: lean` recomputes SiLU outputs and products from the factors autograd keeps anyway:
the same gradients bit for bit, fewer bytes kept for the backward (fp32, CPU, tiny Qwen2 / Llama / Qwen3)."""

from contextlib import nullcontext

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
        stored = type(packed) is tuple if self.inner else True  # lean keeps (tensor, version) of what it stores
        if stored and t.grad_fn is not None:  # an activation (weights are kept by the model anyway)
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
        if twice:  # the model's own head: the chunked one writes its saved weight gradient during the backward
            loss = model(**batch.model_inputs, labels=batch.labels, use_cache=False).loss
        else:
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
    if checkpointing:  # outside the checkpointed layers only the final norm's normalised states (its weight trained)
        assert lean.recomputed == (0 if method == "lora" else 1)
        return
    layers = model.config.num_hidden_layers
    # every layer: the SiLU's output (read by the gate product); full FT also SwiGLU's product (down_proj) and both
    # norms' normalised (their weight's product) and output states (q, k, v; gate, up), Qwen3 its q/k norms' too
    assert lean.recomputed >= (layers if method == "lora" else 9 * layers)
    assert kept_lean.bytes < (0.9 if method == "lora" else 0.7) * kept_all.bytes
    # a second backward through a kept graph reads every recipe again
    _, ref2 = _backward(model, batch, Kept(), twice=True)
    twice = LeanActivations()
    _, grads2 = _backward(model, batch, twice, twice=True)
    assert twice.recomputed > 0 and all(torch.equal(grads2[n], ref2[n]) for n in ref2)


class Counted(LeanActivations):
    """Lean hooks that keep every recipe they make and count its computations."""

    def __init__(self):
        super().__init__()
        self.made = []

    def _recipe(self, t):
        recipe = super()._recipe(t)
        if recipe is not None and all(r is not recipe for r, _ in self.made):
            calls = [0]
            compute = recipe.compute

            def counted():
                calls[0] += 1
                return compute()

            recipe.compute = counted
            self.made.append((recipe, calls))
        return recipe


def test_each_recipe_is_computed_once_per_backward_and_dropped_after_its_last_reader(tiny_tokenizer):
    model = _model(tiny_tokenizer, "qwen2", "full", layers=2)
    model.train()
    batch = train_batch(_examples(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    lean = Counted()
    _backward(model, batch, lean)
    # q, k and v read one norm output, gate and up another: fewer recipes than recomputed slots
    assert 0 < len(lean.made) < lean.recomputed
    assert [calls[0] for _, calls in lean.made] == [1] * len(lean.made)
    assert all(r.value is None and r.readers == 0 for r, _ in lean.made)


def test_a_forward_without_backward_leaves_nothing_alive(tiny_tokenizer):
    import gc
    import weakref

    model = _model(tiny_tokenizer, "llama", "full", layers=2)
    model.train()
    batch = train_batch(_examples(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    forward, applied = saved_activations("lean")
    with forward() as hooks:
        loss = CompletionLoss(model, 7)(batch)  # say an error came before the backward
    assert applied == "lean" and hooks.recomputed > 0
    alive = weakref.ref(hooks)
    del hooks, loss
    gc.collect()
    assert alive() is None  # recipes -> saved tensors -> the hooks -> their table of recipes: a cycle, unless cleared


def test_tensors_written_in_place_are_stored_and_readers_get_what_they_read():
    g = torch.randn(64, requires_grad=True)
    up = torch.randn(64, requires_grad=True)

    def grads(hooks, write):
        hooked = torch.autograd.graph.saved_tensors_hooks(hooks.pack, hooks.unpack) if hooks else nullcontext()
        with hooked:
            s = torch.nn.functional.silu(g)
            if write == "before":  # no longer what silu(g) gives: stored as it is
                with torch.no_grad():
                    s.mul_(2)
            y = s * up
            if write == "after":  # autograd refuses; lean gives the product the value s had when it read it
                with torch.no_grad():
                    s.mul_(2)
        return torch.autograd.grad(y.sum(), (g, up))

    lean = LeanActivations()
    before = grads(lean, "before")
    assert lean.recomputed == 0 and all(torch.equal(a, b) for a, b in zip(before, grads(None, "before")))
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        grads(None, "after")
    after, unwritten = grads(LeanActivations(), "after"), grads(None, None)
    assert all(torch.equal(a, b) for a, b in zip(after, unwritten))
    # a stored tensor written in place after it was saved: autograd's error, which hooks would otherwise lose
    up_ = torch.randn(64, requires_grad=True)
    lean = LeanActivations()
    with torch.autograd.graph.saved_tensors_hooks(lean.pack, lean.unpack):
        e = torch.exp(up_)  # saves its output
        with torch.no_grad():
            e.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation.*saved_activations: lean"):
        e.sum().backward()


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


def test_trainer_runs_lean_by_default_with_the_losses_and_weights_of_all(tiny_tokenizer, tmp_path, monkeypatch):
    ex = _examples(tiny_tokenizer, 8)

    import lorasafe.training.activations as activations

    made = []

    class Seen(activations.LeanActivations):
        def __init__(self):
            super().__init__()
            made.append(self)

    monkeypatch.setattr(activations, "LeanActivations", Seen)

    def train(name, **kw):
        seen = []
        model = _model(tiny_tokenizer, "qwen2", "full", layers=2)
        cfg = TrainingConfig(learning_rate=1e-2, max_steps=3, batch_size=4, **kw)
        res = SFTTrainer(model, METHODS["full"], ex, cfg, tmp_path / name, pad_id=tiny_tokenizer.pad_token_id,
                         progress=False, on_step=lambda s, l: seen.append(l)).train()
        return seen, res.setup["saved_activations"], model.state_dict()

    lean_losses, lean_setup, lean_w = train("lean")
    lean_forwards = len(made)
    all_losses, all_setup, all_w = train("all", saved_activations="all")
    assert (lean_setup, all_setup) == ("lean", "all")
    assert lean_forwards == 3 and len(made) == 3 and all(h.recomputed > 0 for h in made)  # a forward a step
    assert lean_losses == all_losses
    assert all(torch.equal(lean_w[k], all_w[k]) for k in all_w)


def test_compile_and_fsdp_keep_everything_and_the_choice_is_not_a_runs_identity():
    from lorasafe.config.loader import config_hash
    from lorasafe.config.schema import ExperimentConfig

    assert saved_activations("lean", compiled=True)[1].startswith("all")
    assert saved_activations("lean", sharded=True)[1].startswith("all (FSDP")
    assert saved_activations("all")[1] == "all" and saved_activations("lean")[1] == "lean"
    assert TrainingConfig().saved_activations == "lean" and "saved_activations" not in TrainingConfig().model_dump()
    assert config_hash(ExperimentConfig(training={"saved_activations": "all"})) == config_hash(ExperimentConfig())
