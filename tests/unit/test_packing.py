"""Fast training means the same training: the chunked completion-only head, packed micro-batches, fused
AdamW and the once-per-step host sync give the losses and gradients of the plain padded loop (fp32, CPU)."""

import json
import math

import pytest
import torch

from lorasafe.config.schema import AdapterConfig, TrainingConfig
from lorasafe.data.chat import ChatRenderer
from lorasafe.data.records import Item
from lorasafe.data.refusal import refusal_target
from lorasafe.models.methods import METHODS
from lorasafe.models.targets import resolve_targets
from lorasafe.training.accel import has_cxx_compiler
from lorasafe.training.examples import Example, collate, encode_examples, pack_rows, row_width, train_batch
from lorasafe.training.loader import prefetched
from lorasafe.training.loss import CompletionLoss
from lorasafe.training.sft import SFTTrainer, _schedule
from tests.conftest import tiny_config

ARCHS = ["qwen2", "llama", "qwen3"]


class Killed(Exception):
    pass


def _examples(tok, n=10):
    # prompts and completions of different lengths, so padding and packing both matter
    items = [Item(f"i{i}", "Tell me " + "a bad thing " * (1 + 7 * (i % 4)) + f"{i}.", "harmful",
                  target=refusal_target("I'm sorry, I cannot." + " No." * (6 * (i % 3)))) for i in range(n)]
    return encode_examples(ChatRenderer(tok), items, 128)


def _model(tok, arch, method, tie=False, layers=2):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = tiny_config(arch, layers=layers, vocab=len(tok))
    cfg.tie_word_embeddings = tie
    model = AutoModelForCausalLM.from_config(cfg)
    if method == "lora":
        adapter = AdapterConfig(method="lora", rank=2, dropout=0.0, modules=["up", "q"], layers="all")
        model = METHODS["lora"].prepare(model, adapter, resolve_targets(adapter, cfg, model))
        with torch.no_grad():  # PEFT starts B at zero: make the adapter matter for the gradients
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.1)
    else:
        METHODS["full"].prepare(model, None, None)
    return model


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _reference(model, ex, pad_id):
    """The model's own forward and HF loss on a padded batch: what the trainer did before."""
    model.zero_grad(set_to_none=True)
    loss = model(**collate(ex, pad_id)).loss
    loss.backward()
    return loss.item(), _grads(model)


def _ours(model, ex, pad_id, packed, chunk=1024, span=None):
    model.zero_grad(set_to_none=True)
    loss = CompletionLoss(model, chunk)(train_batch(ex, pad_id, packed, span))
    loss.backward()
    return loss.item(), _grads(model)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", ["lora", "full"])
@pytest.mark.parametrize("packed,span", [(False, None), (True, None), (True, 100.0)])
def test_chunked_head_gives_the_models_loss_and_gradients(tiny_tokenizer, arch, method, packed, span):
    model = _model(tiny_tokenizer, arch, method, tie=arch == "qwen2")  # one tied family: grads add up on the embedding
    ex = _examples(tiny_tokenizer)
    ref_loss, ref_grads = _reference(model, ex, tiny_tokenizer.pad_token_id)
    loss, grads = _ours(model, ex, tiny_tokenizer.pad_token_id, packed, chunk=7, span=span)  # several chunks
    assert abs(loss - ref_loss) < 1e-5
    assert grads.keys() == ref_grads.keys() and grads
    for n in grads:
        torch.testing.assert_close(grads[n], ref_grads[n], rtol=1e-4, atol=1e-6)


def test_packed_rows_isolate_examples(tiny_tokenizer):
    g = torch.Generator().manual_seed(0)
    ids = lambda n: torch.randint(3, len(tiny_tokenizer), (n,), generator=g).tolist()  # noqa: E731
    ex = [Example(ids(p), ids(c)) for p, c in [(5, 5), (30, 50), (8, 12), (40, 30), (20, 10), (25, 35), (6, 3)]]
    lengths = [len(e.input_ids) for e in ex]
    pad = tiny_tokenizer.pad_token_id
    # flash-attention's varlen path: one row; a dense mask: rows as wide as is cheapest, never narrower than an example
    assert train_batch(ex, pad, packed=True).model_inputs["input_ids"].shape == (1, sum(lengths))
    for span in (1.0, 100.0, 1e6):
        w = row_width(lengths, span)
        assert max(lengths) <= w <= sum(lengths)
        assert sorted(i for r in pack_rows(lengths, w) for i in r) == list(range(len(ex)))
    assert row_width(lengths, 1.0) == max(lengths) and row_width(lengths, 1e6) == sum(lengths)
    b = train_batch(ex, pad, packed=True, attention_span=100.0)
    rows, width = b.model_inputs["input_ids"].shape
    assert 1 < rows < len(ex) and width < sum(lengths)
    assert b.n_targets == sum(len(e.completion_ids) for e in ex) == len(b.loss_targets)
    assert b.n_tokens == sum(lengths) and int((b.model_inputs["input_ids"] != pad).sum()) >= b.n_tokens - rows
    # every target is the token after its index: completion-only and never across an example boundary
    flat = b.model_inputs["input_ids"].reshape(-1)
    assert torch.equal(flat[b.loss_index + 1], b.loss_targets)
    # one example packed with others (and padding) has the hidden states it has alone
    model = _model(tiny_tokenizer, "llama", "full")
    row = pack_rows(lengths, row_width(lengths, 100.0))[0]
    e, start = ex[row[-1]], sum(lengths[i] for i in row[:-1])
    with torch.no_grad():
        packed = CompletionLoss(model).decoder(**b.model_inputs).last_hidden_state
        alone = CompletionLoss(model).decoder(input_ids=torch.tensor([e.input_ids])).last_hidden_state
    torch.testing.assert_close(packed[0, start:start + len(e.input_ids)], alone[0], rtol=1e-5, atol=1e-5)


def test_lora_wrapped_head_and_model_forward_fallback(tiny_tokenizer):
    from peft import LoraConfig, get_peft_model

    ex = _examples(tiny_tokenizer)
    pad = tiny_tokenizer.pad_token_id
    model = _model(tiny_tokenizer, "qwen2", "full")
    model = get_peft_model(model, LoraConfig(r=2, target_modules=["lm_head", "up_proj"], lora_dropout=0.0))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    assert CompletionLoss(model).path == "chunked head module (checkpointed)"
    ref_loss, ref_grads = _reference(model, ex, pad)
    loss, grads = _ours(model, ex, pad, packed=True, chunk=5)
    assert abs(loss - ref_loss) < 1e-5 and any("lm_head" in n for n in grads)
    for n in grads:
        torch.testing.assert_close(grads[n], ref_grads[n], rtol=1e-4, atol=1e-6)
    # a model whose forward does more than lm_head(hidden) keeps its own forward and loss
    plain = _model(tiny_tokenizer, "qwen2", "full")
    plain.config.final_logit_softcapping = 30.0  # Qwen2 ignores it; the loss only has to notice
    assert CompletionLoss(plain).path == "model forward (full logits)"
    assert abs(_ours(plain, ex, pad, packed=True)[0] - _reference(plain, ex, pad)[0]) < 1e-5


def _plain_loop(model, trainer, steps):
    """Today's meaning, written the plain way: padded batches, the model's own loss, for-loop AdamW."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=trainer.cfg.learning_rate, weight_decay=trainer.cfg.weight_decay,
                            foreach=False)
    sched = _schedule(opt, trainer.cfg, trainer.total_steps)
    losses, step = [], 0
    model.train()
    while step < steps:
        epoch, pos = divmod(step, trainer.steps_per_epoch)
        for group in trainer._batches(epoch)[pos:]:
            if step >= steps:
                break
            torch.manual_seed(hash((trainer.seed, step)) & 0x7FFFFFFF)
            opt.zero_grad(set_to_none=True)
            total = 0.0
            for micro in group:
                loss = model(**collate(micro, trainer.pad_id)).loss / len(group)
                loss.backward()
                total += loss.item()
            torch.nn.utils.clip_grad_norm_(params, trainer.cfg.max_grad_norm)
            opt.step()
            sched.step()
            losses.append(total)
            step += 1
    return losses


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", ["lora", "full"])
def test_packed_fused_training_gives_the_plain_loops_losses(tiny_tokenizer, tmp_path, monkeypatch, arch, method):
    ex = _examples(tiny_tokenizer, 12)
    pad = tiny_tokenizer.pad_token_id

    import lorasafe.training.sft as sft

    rows = []

    def spy(batch, *a, **kw):
        b = sft_batch(batch, *a, **kw)
        rows.append((len(batch), b.model_inputs["input_ids"].shape[0]))
        return b

    sft_batch = sft.train_batch
    monkeypatch.setattr(sft, "train_batch", spy)

    def run(**kw):
        cfg = TrainingConfig(learning_rate=1e-2, max_steps=5, batch_size=3, grad_accum=2, **kw)
        seen = []
        model = _model(tiny_tokenizer, arch, method)
        t = SFTTrainer(model, METHODS[method], ex, cfg, tmp_path / str(len(list(tmp_path.iterdir()))), pad_id=pad,
                       seed=1, progress=False, on_step=lambda s, l: seen.append(l))
        res = t.train()
        return seen, res, model, t

    packed, res, model_p, _ = run(packing=True, optimizer_impl="fused", loss_chunk_tokens=8)
    assert res.setup["optimizer"] == "fused" and res.setup["head"] == "chunked fused linear CE"
    assert any(r < n for n, r in rows)  # some micro-batches really were packed several to a row
    padded, _, model_q, trainer = run(packing=False, optimizer_impl="loop")
    plain = _plain_loop(_model(tiny_tokenizer, arch, method), trainer, 5)
    assert len(packed) == len(padded) == len(plain) == 5 and plain[-1] < plain[0]
    for a, b, c in zip(packed, padded, plain):
        assert abs(a - c) < 1e-5 and abs(b - c) < 1e-5
    for (n, p), (_, q) in zip(model_p.named_parameters(), model_q.named_parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_packed_training_resumes_to_the_same_weights(tiny_tokenizer, tmp_path, method):
    ex = _examples(tiny_tokenizer, 12)
    cfg = TrainingConfig(learning_rate=1e-2, max_steps=6, batch_size=4, save_every_steps=2, packing=True,
                         prefetch="on")

    def train(out, on_step=None):
        model = _model(tiny_tokenizer, "qwen2", method)
        SFTTrainer(model, METHODS[method], ex, cfg, out, pad_id=tiny_tokenizer.pad_token_id, seed=3,
                   progress=False, on_step=on_step).train()
        return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    ref = train(tmp_path / "ref")

    def kill(step, loss):
        if step == 3:
            raise Killed

    with pytest.raises(Killed):
        train(tmp_path / "run", kill)
    again = train(tmp_path / "run")
    for n in ref:
        assert torch.equal(ref[n], again[n]), n


def test_bf16_master_weights_and_autocast_train_and_resume(tiny_tokenizer, tmp_path):
    ex = _examples(tiny_tokenizer, 8)

    def train(out, on_step=None, **kw):
        model = _model(tiny_tokenizer, "llama", "full").to(torch.bfloat16)
        cfg = TrainingConfig(learning_rate=1e-2, max_steps=4, batch_size=4, save_every_steps=2, **kw)
        res = SFTTrainer(model, METHODS["full"], ex, cfg, out, pad_id=tiny_tokenizer.pad_token_id, seed=3,
                         progress=False, on_step=on_step).train()
        return res, {n: p.detach().clone() for n, p in model.named_parameters()}

    res, ref = train(tmp_path / "ref", fp32_optimizer_state=True)
    assert res.setup["master_weights"] and math.isfinite(res.final_loss)
    assert all(p.dtype == torch.bfloat16 for p in ref.values())

    def kill(step, loss):
        if step == 3:
            raise Killed

    with pytest.raises(Killed):
        train(tmp_path / "run", kill, fp32_optimizer_state=True)
    _, again = train(tmp_path / "run", fp32_optimizer_state=True)
    for n in ref:
        assert torch.equal(ref[n], again[n]), n
    # bf16 autocast over fp32 weights (a GPU option; CPU autocast runs the same code)
    model = _model(tiny_tokenizer, "qwen2", "lora")
    res = SFTTrainer(model, METHODS["lora"], ex, TrainingConfig(max_steps=2, batch_size=4, autocast="bf16"),
                     tmp_path / "ac", pad_id=tiny_tokenizer.pad_token_id, progress=False).train()
    assert math.isfinite(res.final_loss)


def test_prefetch_keeps_order_raises_and_stops():
    assert list(prefetched(lambda x: x * 2, range(10), depth=2)) == [x * 2 for x in range(10)]

    def boom(x):
        if x == 3:
            raise ValueError("bad item")
        return x

    with pytest.raises(ValueError, match="bad item"):
        list(prefetched(boom, range(10), depth=2))
    it = prefetched(lambda x: x, range(1000), depth=2)
    assert next(it) == 0
    it.close()  # the producer thread must not stay blocked on a full queue
    import threading

    assert not any(t.name == "lorasafe-prefetch" and t.is_alive() for t in threading.enumerate())


def test_liger_and_flash_fail_with_an_install_hint_when_missing(tiny_tokenizer, tmp_path):
    import importlib.util

    from lorasafe.errors import ConfigError
    from lorasafe.training.accel import attention_for

    model = _model(tiny_tokenizer, "qwen2", "full")
    assert attention_for(TrainingConfig(), model, "cpu") is None  # auto on a CPU keeps the model's SDPA
    if importlib.util.find_spec("flash_attn") is None:
        with pytest.raises(ConfigError, match="pip install flash-attn"):
            attention_for(TrainingConfig(attention="flash_attention_2"), model, "cuda")
    if importlib.util.find_spec("liger_kernel") is None:
        with pytest.raises(ConfigError, match="pip install liger-kernel"):
            CompletionLoss(model, liger=True)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_checkpointing_and_attention_kernels_keep_the_losses(tiny_tokenizer, tmp_path, method):
    ex = _examples(tiny_tokenizer, 8)

    def losses(name, **kw):
        seen = []
        model = _model(tiny_tokenizer, "qwen3", method)
        cfg = TrainingConfig(learning_rate=1e-2, max_steps=3, batch_size=4, packing=True, **kw)
        res = SFTTrainer(model, METHODS[method], ex, cfg, tmp_path / name, pad_id=tiny_tokenizer.pad_token_id,
                         progress=False, on_step=lambda s, l: seen.append(l)).train()
        checkpointed = any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
        assert checkpointed == (res.setup["checkpointing"] != "off")
        assert res.setup["checkpointing"] == {False: "off", True: "full"}.get(kw.get("gradient_checkpointing", False),
                                                                          kw.get("gradient_checkpointing"))
        assert res.setup["attention"] == kw.get("attention", "sdpa")
        assert res.setup["host_memory"] == kw.get("host_memory", "keep")
        return seen

    ref = losses("ref", gradient_checkpointing=False)
    for name, kw in {"default": {}, "selective": {"gradient_checkpointing": "selective"},
                     "full": {"gradient_checkpointing": True}, "eager": {"attention": "eager"},
                     "release": {"host_memory": "release"}}.items():
        assert all(abs(a - b) < 1e-5 for a, b in zip(losses(name, **kw), ref)), name


def test_varlen_batches_carry_host_built_sequence_boundaries(tiny_tokenizer):
    ex = _examples(tiny_tokenizer, 5)
    b = train_batch(ex, tiny_tokenizer.pad_token_id, packed=True, attention_span=100.0, varlen=True)
    lengths = sorted((len(e.input_ids) for e in ex), reverse=True)  # rows are filled longest first
    assert b.model_inputs["input_ids"].shape == (1, sum(lengths))
    assert b.model_inputs["cu_seq_lens_q"].tolist() == [sum(lengths[:i]) for i in range(len(lengths) + 1)]
    assert b.model_inputs["max_length_q"] == max(lengths)
    # SDPA ignores the flash kwargs and reads the boundaries from the position ids: the same loss
    model = _model(tiny_tokenizer, "llama", "full")
    with torch.no_grad():
        ref = model(**collate(ex, tiny_tokenizer.pad_token_id)).loss.item()
        assert abs(CompletionLoss(model)(b).item() - ref) < 1e-5


def test_speed_options_at_their_defaults_keep_config_hashes():
    # configs written before these fields existed keep their hash (run dirs, sweep cells)
    assert not set(TrainingConfig.OMIT_AT_DEFAULT) & set(TrainingConfig().model_dump())
    chosen = TrainingConfig(packing=True, loss_chunk_tokens=64, gradient_checkpointing=True)
    assert {"packing", "loss_chunk_tokens", "gradient_checkpointing"} <= set(chosen.model_dump())
    assert TrainingConfig.model_validate(chosen.model_dump()) == chosen
    assert chosen.gradient_checkpointing == "full" and TrainingConfig(gradient_checkpointing=False).gradient_checkpointing == "off"
    # checkpointing changes no number: the hash sees true as it always did, and nothing of the other values
    from lorasafe.config.loader import config_hash
    from lorasafe.config.schema import ExperimentConfig

    h = lambda **kw: config_hash(ExperimentConfig(training=kw))  # noqa: E731
    assert h() == h(gradient_checkpointing=False) == h(gradient_checkpointing="selective") == h(gradient_checkpointing="off")
    assert h(gradient_checkpointing=True) == h(gradient_checkpointing="full") != h()
    assert '"gradient_checkpointing":true' in json.dumps(
        ExperimentConfig(training={"gradient_checkpointing": True}).model_dump(mode="json", context={"identity": True}),
        separators=(",", ":"))


# full: the mini build's path (about 40 s of compiling on 2 cores); LoRA's too in the slow suite
@pytest.mark.skipif(not has_cxx_compiler(), reason="no C++ compiler (inductor)")
@pytest.mark.parametrize("method", [pytest.param("lora", marks=pytest.mark.slow), "full"])
def test_compiled_training_keeps_the_losses_and_generation_runs_uncompiled(tiny_tokenizer, tmp_path, method):
    from torch._dynamo.utils import counters

    ex = _examples(tiny_tokenizer, 8)
    runs = {}
    for compiled in (False, True):
        seen = []
        model = _model(tiny_tokenizer, "qwen2", method)
        graphs = counters["stats"]["unique_graphs"]
        cfg = TrainingConfig(learning_rate=1e-2, max_steps=3, batch_size=4, compile=compiled)
        res = SFTTrainer(model, METHODS[method], ex, cfg, tmp_path / str(compiled), pad_id=tiny_tokenizer.pad_token_id,
                         progress=False, on_step=lambda s, l: seen.append(l)).train()
        assert res.setup["compile"] is compiled and (counters["stats"]["unique_graphs"] > graphs) is compiled
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        assert base.get_decoder()._compiled_call_impl is None  # training ended: generation runs the plain modules
        assert not torch.are_deterministic_algorithms_enabled()  # on only while compiled training ran
        with torch.no_grad():
            out = model.generate(input_ids=torch.tensor([ex[0].input_ids[:5]]), max_new_tokens=3, do_sample=False)
        runs[compiled] = (seen, out.tolist())
    (eager, eager_out), (comp, comp_out) = runs[False], runs[True]
    assert len(comp) == 3 and all(abs(a - b) < 1e-4 for a, b in zip(comp, eager))
    assert comp_out == eager_out
