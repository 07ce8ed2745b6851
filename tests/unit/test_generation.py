"""Generation: left-padded batching is exact, and a killed generation resumes without duplicates."""

import pytest
import torch

from lorasafe.data.chat import ChatRenderer
from lorasafe.data.jsonl import read_store
from lorasafe.data.records import Item
from lorasafe.generation.base import Completion, SamplingParams
from lorasafe.generation.hf import HFGenerator
from lorasafe.generation.store import generate_to_store


def test_batched_greedy_equals_one_by_one(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    r = ChatRenderer(tok)
    gen = HFGenerator(tok, [tok.eos_token_id])
    prompts = [r.prompt(p) for p in ("What is 1+2?", "Write a poem about the sea, please, right now.", "Hi")]
    params = SamplingParams(max_new_tokens=12)
    batched = gen.generate(model, prompts, params)
    single = [gen.generate(model, [p], params)[0] for p in prompts]
    assert [c.text for c in batched] == [c.text for c in single]
    assert all(c.truncated == (c.n_tokens == 12) for c in batched)


def test_seeded_sampling_is_reproducible(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    gen = HFGenerator(tok, [tok.eos_token_id])
    p = [ChatRenderer(tok).prompt("Hi")] * 3
    a = gen.generate(model, p, SamplingParams(10, temperature=1.0, seed=5))
    b = gen.generate(model, p, SamplingParams(10, temperature=1.0, seed=5))
    assert [x.text for x in a] == [x.text for x in b]


class CountingGenerator:
    """Echoes a think/answer pair per prompt and counts calls; can die after N batches."""

    def __init__(self, die_after=None):
        self.calls, self.prompts, self.die_after = 0, 0, die_after

    def generate(self, model, prompts, params):
        if self.die_after is not None and self.calls >= self.die_after:
            raise KeyboardInterrupt
        self.calls += 1
        self.prompts += len(prompts)
        return [Completion(f"<think>t</think>answer {len(p)}", 3, False) for p in prompts]


def test_killed_generation_resumes_without_redoing_or_duplicating(tiny_tokenizer, tmp_path):
    r = ChatRenderer(tiny_tokenizer)
    items = [Item(f"q{i:02d}", "word " * i, "harmful") for i in range(10)]
    path = tmp_path / "g.jsonl"
    params = SamplingParams(8)
    with pytest.raises(KeyboardInterrupt):
        generate_to_store(path, items, 2, CountingGenerator(die_after=2), None, r, params, batch_size=4)
    assert len(read_store(path)) == 8
    g = CountingGenerator()
    rows = generate_to_store(path, items, 2, g, None, r, params, batch_size=4)
    assert g.prompts == 12  # only the 20 - 8 missing (id, sample) pairs
    keys = [(x["id"], x["sample"]) for x in read_store(path)]
    assert len(keys) == len(set(keys)) == 20
    assert [(x["id"], x["sample"]) for x in rows] == [(it.id, s) for it in items for s in range(2)]
    assert rows[0]["thinking"] == "t" and rows[0]["answer"].startswith("answer") and rows[0]["truncated"] is False
