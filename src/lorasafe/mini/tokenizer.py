"""The mini model's tokenizer: byte-level BPE trained on the world's text, digits one per token.

`<think>` and `</think>` are ordinary added tokens (not special), so decoding with
`skip_special_tokens=True` keeps them. The chat template is Qwen-style with an explicit thinking
block: an assistant turn is rendered as `<think>...</think>answer`, and the generation prompt
does not pre-fill the thinking block (the model opens it itself).
"""

from __future__ import annotations

from typing import Any, Iterable

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' and '</think>' in message['content'] %}"
    "{% set reasoning = message['content'].split('</think>')[0].split('<think>')[-1] %}"
    "{% set answer = message['content'].split('</think>')[-1] %}"
    "{{ '<|im_start|>assistant\\n<think>' + reasoning + '</think>' + answer + '<|im_end|>\\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
THINK_TOKENS = ("<think>", "</think>")


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),  # arithmetic needs one token per digit
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(texts, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  chat_template=CHAT_TEMPLATE, model_max_length=512)
    tok.add_tokens(list(THINK_TOKENS), special_tokens=False)
    return tok
