"""Model families as data: architecture layouts, chat styles, and the families users bring.

- `Family` (an architecture, resolved from the model config's `model_type`, never from the model's
  name): where the decoder layers live, what each projection is called, and which expert weights
  are plain parameters (MoE: reached through PEFT's `target_parameters`, one LoRA pair per expert).
- `ChatStyle`: what a chat template does with the think contract (see data/chat.py, which probes
  the template itself). Declared here so tests check each family's real template against it and a
  changed template (R1-Distill's generation prompt gained `<think>\\n` in 2025) shows up as a diff.
- `ModelFamily`: a family of models the field uses = an architecture + a chat style + example models.
One `model_type` may serve several chat styles (qwen2: R1-Distill-Qwen and Qwen2.5-Instruct), which
is why the chat style is probed, not looked up. Adding an architecture is one `register_family`
call; adding a model family is one `ModelFamily` entry. Must not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lorasafe.errors import TargetError


@dataclass(frozen=True)
class Family:
    name: str
    layers_path: str  # dotted path of the decoder layer list inside the CausalLM
    modules: dict[str, str]  # canonical name -> path of a linear layer inside one decoder layer
    # canonical name -> path of a parameter inside one decoder layer: fused expert weights of shape
    # (experts, d1, d2), which PEFT adapts with `target_parameters` (rank r per expert).
    parameters: dict[str, str] = field(default_factory=dict)

    def module_path(self, layer: int, module: str) -> str:
        return f"{self.layers_path}.{layer}.{self.modules[module]}"

    def parameter_path(self, layer: int, name: str) -> str:
        return f"{self.layers_path}.{layer}.{self.parameters[name]}"

    @property
    def names(self) -> tuple[str, ...]:
        return (*self.modules, *self.parameters)


_ATTENTION = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj"}
_LLAMA_LIKE = {**_ATTENTION, "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}
# Fused experts: gate and up are one tensor (gpt-oss interleaves them, Qwen3-MoE concatenates them), so the
# paper's up_proj-only LoRA has no exact MoE counterpart; `experts_gate_up` adapts both halves.
_EXPERTS = {"experts_gate_up": "mlp.experts.gate_up_proj", "experts_down": "mlp.experts.down_proj"}

FAMILIES: dict[str, Family] = {}


def register_family(model_types: tuple[str, ...], family: Family) -> None:
    for t in model_types:
        FAMILIES[t] = family


register_family(("qwen2", "qwen3", "llama", "mistral", "gemma", "gemma2", "olmo2", "granite"),
                Family("llama-like", "model.layers", _LLAMA_LIKE))
# Qwen3-MoE: dense MLP projections exist only in `mlp_only_layers` (none in the released models).
register_family(("qwen3_moe",), Family("qwen3-moe", "model.layers", _LLAMA_LIKE, _EXPERTS))
register_family(("gpt_oss",), Family("gpt-oss", "model.layers", _ATTENTION, _EXPERTS))


def family_for(model_type: str) -> Family:
    try:
        return FAMILIES[model_type]
    except KeyError:
        raise TargetError(
            f"Model type {model_type!r} has no architecture family, so canonical module names (q, k, v, o, "
            f"gate, up, down) cannot be mapped to its layers. Known types: {', '.join(sorted(FAMILIES))}. "
            "Register one with lorasafe.models.families.register_family."
        ) from None


@dataclass(frozen=True)
class ChatStyle:
    """What `ChatRenderer` should find when it probes a template of this style (its `describe()` keys)."""

    name: str
    thinking: str  # native | contract (lorasafe's tags are plain text to the model) | off
    mode: str  # template | fallback
    prefill: str = ""  # what the generation prompt pre-fills of the thinking block
    carrier: str = "content"  # or the message field the template reads the thinking from
    split: tuple[str, str] = ("<think>", "</think>")  # markers around the thinking in an output
    switch: str | None = None  # the template's thinking switch (a chat-template kwarg)
    history_thinking: bool = True  # False: earlier assistant turns are rendered without their thinking

    def differences(self, described: dict[str, str]) -> list[str]:
        """How a renderer's `describe()` departs from this style (empty when it matches)."""
        want = {"thinking": self.thinking, "mode": self.mode, "prefill": self.prefill, "carrier": self.carrier,
                "split_open": self.split[0], "split_close": self.split[1]}
        return [f"{k}: expected {v!r}, found {described.get(k)!r}" for k, v in want.items() if described.get(k) != v]


_HARMONY_FINAL = "<|end|><|start|>assistant<|channel|>final<|message|>"
CHAT_STYLES: dict[str, ChatStyle] = {s.name: s for s in (
    # R1-Distill (Qwen and Llama): `<｜Assistant｜><think>\n` opens the thinking; earlier turns keep only the text
    # after `</think>`; so is the turn being trained on, hence the fallback assembly of the completion.
    ChatStyle("r1-distill", "native", "fallback", prefill="<think>\n", history_thinking=False),
    # Qwen3: thinking kept (whitespace normalised) for turns after the last user query; `enable_thinking` switch.
    ChatStyle("qwen3", "native", "template", switch="enable_thinking", history_thinking=False),
    ChatStyle("qwen3-no-think", "off", "template", prefill="<think>\n\n</think>\n\n", switch="enable_thinking",
              history_thinking=False),
    # ChatML as SmolLM2 uses it has no thinking block: the contract's tags are text the model learns. (Llama-3's
    # template behaves alike; no copy of it is at hand to check against, so it has no entry yet.)
    ChatStyle("chatml-no-think", "contract", "template"),
    # gpt-oss harmony: thinking in the `thinking` field, rendered as the analysis channel, the answer as final;
    # the chain of thought of earlier turns is dropped.
    ChatStyle("harmony", "native", "template", carrier="thinking",
              split=("<|channel|>analysis<|message|>", _HARMONY_FINAL), history_thinking=False),
)}


@dataclass(frozen=True)
class ModelFamily:
    name: str
    model_type: str  # the architecture (FAMILIES key)
    chat: str  # CHAT_STYLES key (the default; a switch may select another)
    models: tuple[str, ...]  # hub ids of its members (config-only copies in configs/models/ where listed there)


MODEL_FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (
    ModelFamily("r1-distill-qwen", "qwen2", "r1-distill",
                tuple(f"deepseek-ai/DeepSeek-R1-Distill-Qwen-{s}" for s in ("1.5B", "7B", "14B", "32B"))),
    ModelFamily("r1-distill-llama", "llama", "r1-distill", ("deepseek-ai/DeepSeek-R1-Distill-Llama-8B",)),
    ModelFamily("qwen3", "qwen3", "qwen3", ("Qwen/Qwen3-8B",)),
    ModelFamily("qwen3-moe", "qwen3_moe", "qwen3", ("Qwen/Qwen3-30B-A3B",)),
    ModelFamily("smollm2", "llama", "chatml-no-think", ("HuggingFaceTB/SmolLM2-135M-Instruct",)),
    ModelFamily("gpt-oss", "gpt_oss", "harmony", ("openai/gpt-oss-20b", "openai/gpt-oss-120b")),
)}
