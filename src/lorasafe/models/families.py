"""Architecture families: where the decoder layers live and what each projection is called.

A family is resolved from the model config's `model_type`, never from the model's name. Adding
an architecture is one `register_family` call. Must not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from lorasafe.errors import TargetError


@dataclass(frozen=True)
class Family:
    name: str
    layers_path: str  # dotted path of the decoder layer list inside the CausalLM
    modules: dict[str, str]  # canonical name -> path inside one decoder layer

    def module_path(self, layer: int, module: str) -> str:
        return f"{self.layers_path}.{layer}.{self.modules[module]}"


_LLAMA_LIKE = {
    "q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
    "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj",
}

FAMILIES: dict[str, Family] = {}


def register_family(model_types: tuple[str, ...], family: Family) -> None:
    for t in model_types:
        FAMILIES[t] = family


register_family(("qwen2", "qwen3", "llama", "mistral", "gemma", "gemma2", "olmo2", "granite"),
                Family("llama-like", "model.layers", _LLAMA_LIKE))


def family_for(model_type: str) -> Family:
    try:
        return FAMILIES[model_type]
    except KeyError:
        raise TargetError(
            f"Model type {model_type!r} has no architecture family, so canonical module names (q, k, v, o, "
            f"gate, up, down) cannot be mapped to its layers. Known types: {', '.join(sorted(FAMILIES))}. "
            "Register one with lorasafe.models.families.register_family."
        ) from None
