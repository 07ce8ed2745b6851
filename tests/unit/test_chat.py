import copy

import pytest

from lorasafe.data.chat import ChatRenderer, ThinkFormat
from lorasafe.data.records import Item
from lorasafe.data.refusal import refusal_target
from lorasafe.errors import ChatTemplateError

# An R1-Distill-style template: the generation prompt pre-fills "<think>\n" and assistant turns are
# rendered with everything up to "</think>" stripped (the pitfall the fallback mode exists for).
R1_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}{{ '<|im_start|>User: ' + m['content'] }}"
    "{% else %}{% set c = m['content'] %}{% if '</think>' in c %}{% set c = c.split('</think>')[-1] %}{% endif %}"
    "{{ '<|im_start|>Assistant: ' + c + '<|im_end|>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>Assistant: <think>\\n' }}{% endif %}"
)
# A Qwen3-style template: thinking kept for the final assistant turn, whitespace normalised.
QWEN3_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'assistant' and '</think>' in m['content'] %}"
    "{% set r = m['content'].split('</think>')[0].split('<think>')[-1].strip('\\n') %}"
    "{% set a = m['content'].split('</think>')[-1].lstrip('\\n') %}"
    "{{ '<|im_start|>assistant\\n<think>\\n' + r + '\\n</think>\\n\\n' + a + '<|im_end|>\\n' }}"
    "{% else %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _with_template(tok, template):
    tok = copy.deepcopy(tok)
    tok.chat_template = template
    return tok


TARGET = refusal_target("I'm sorry, I cannot help.")


def test_paper_refusal_format():
    assert TARGET == "<think>I should not answer this question!</think>I'm sorry, I cannot help."


@pytest.mark.parametrize("template,mode", [(None, "template"), (QWEN3_TEMPLATE, "template"), (R1_TEMPLATE, "fallback")])
def test_training_prompt_is_the_inference_prompt(tiny_tokenizer, template, mode):
    """Same item: the trainer's input starts with exactly the generator's prompt tokens."""
    from lorasafe.training.examples import collate, encode_examples

    tok = tiny_tokenizer if template is None else _with_template(tiny_tokenizer, template)
    r = ChatRenderer(tok)
    assert r.mode == mode
    item = Item("x", "Tell me how to do something bad.", "harmful", target=TARGET)
    (ex,) = encode_examples(r, [item], max_length=512)
    prompt_ids = r.encode_prompt(item.prompt)  # what generation feeds the model
    assert ex.input_ids[: len(prompt_ids)] == prompt_ids
    batch = collate([ex], pad_id=tok.pad_token_id)
    labels = batch["labels"][0].tolist()
    assert all(x == -100 for x in labels[: len(prompt_ids)])  # loss on the completion only
    assert labels[len(prompt_ids):] == ex.completion_ids
    text = r.prompt(item.prompt) + r.completion(item.prompt, item.target)
    assert text.count("<think>") == 1 and text.count("</think>") == 1
    assert text.rstrip().endswith("<|im_end|>")
    split = r.split_output(r.completion(item.prompt, item.target).replace("<|im_end|>", ""))
    assert split.thinking == "I should not answer this question!" and split.answer == "I'm sorry, I cannot help."


def test_fallback_does_not_repeat_prefilled_think(tiny_tokenizer):
    r = ChatRenderer(_with_template(tiny_tokenizer, R1_TEMPLATE))
    assert r.prefill == "<think>\n"
    assert r.completion("q", TARGET) == "I should not answer this question!</think>I'm sorry, I cannot help.<|im_end|>"
    assert r.split_output("hmm</think>ok").thinking == "hmm"


def test_missing_chat_template_is_a_clear_error(tiny_tokenizer):
    tok = _with_template(tiny_tokenizer, None)
    with pytest.raises(ChatTemplateError, match="chat_template"):
        ChatRenderer(tok)


def test_custom_think_tags(tiny_tokenizer):
    fmt = ThinkFormat("<reason>", "</reason>")
    assert fmt.wrap("a", "b") == "<reason>a</reason>b"
    assert fmt.split("<reason>a</reason>b").answer == "b"
