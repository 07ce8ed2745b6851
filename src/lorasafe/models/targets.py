"""Adapter targeting: resolve an `AdapterConfig` to exact module names before weights load.

Targets are resolved against the model's structure (models/structure.py: measured from the model
instantiated on the meta device, no weights, or read from a stored measurement), so the resolved
names, their shapes and the trainable-parameter count are exact for any architecture transformers
knows. PEFT then receives a regex that matches exactly those module names, and the
exact names of any fused expert parameters (MoE) as `target_parameters`: PEFT's ParamWrapper gives
each of the E experts its own rank-r pair, so a (E, d1, d2) tensor trains r * E * (d1 + d2) values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lorasafe.config.schema import AdapterConfig, LayerRange
from lorasafe.errors import TargetError
from lorasafe.models.families import family_for
from lorasafe.models.structure import ModelStructure


@dataclass(frozen=True)
class TargetPlan:
    method: str
    modules: list[str]  # full module names (empty for full fine-tuning and for none)
    layers: list[int]
    trainable_params: int
    total_params: int
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # module -> (out, in); parameter -> its shape
    parameters: list[str] = field(default_factory=list)  # full names of expert parameters (PEFT target_parameters)

    @property
    def peft_regex(self) -> str:
        return "^(?:" + "|".join(re.escape(m) for m in self.modules) + ")$"


def layer_band(band: str | LayerRange, n_layers: int) -> list[int]:
    """Inclusive layer indices of a named third or an explicit range."""
    if isinstance(band, LayerRange):
        if band.last >= n_layers:
            raise TargetError(
                f"adapter.layers {band.first}..{band.last} is outside the model, which has {n_layers} layers "
                f"(0..{n_layers - 1}). Use a range within 0..{n_layers - 1} or a band: early, middle, late, all."
            )
        return list(range(band.first, band.last + 1))
    if band == "all":
        return list(range(n_layers))
    third = n_layers // 3
    bounds = {"early": (0, third), "middle": (third, 2 * third), "late": (2 * third, n_layers)}
    lo, hi = bounds[band]
    return list(range(lo, hi))


def resolve_targets(adapter: AdapterConfig, config: Any, model: Any | None = None) -> TargetPlan:
    """Check `adapter` against `model` (or the model `config` describes) and count what it trains."""
    return plan_targets(adapter, ModelStructure.measure(config, model))


def plan_targets(adapter: AdapterConfig, structure: ModelStructure) -> TargetPlan:
    """Check `adapter` against a model's structure and count what it trains."""
    total = structure.total_params
    if adapter.method == "none":
        return TargetPlan("none", [], [], 0, total)
    if adapter.method == "full":
        return TargetPlan("full", [], list(range(structure.num_hidden_layers)), structure.trainable_params, total)
    model_type = structure.model_type
    family = family_for(model_type)
    layers = layer_band(adapter.layers, structure.num_hidden_layers)
    modules, parameters, shapes, trainable = [], [], {}, 0
    for canon in adapter.modules:
        if canon not in family.names:
            raise TargetError(f"Module {canon!r} is not part of a {model_type} model ({family.name} family). "
                              f"Valid module names: {', '.join(family.names)}.")
    if any(c in family.parameters for c in adapter.modules) and adapter.dropout:
        raise TargetError(f"adapter.dropout is {adapter.dropout}, but expert weights ({', '.join(family.parameters)}) "
                          "are adapted through PEFT's target_parameters, which cannot apply dropout. Set "
                          "adapter.dropout: 0.")
    for layer in layers:
        for canon in adapter.modules:
            if canon in family.parameters:
                path = family.parameter_path(layer, canon)
                shape = structure.experts.get(path)
                if shape is None:
                    raise TargetError(f"{canon!r} ({path}) is not a fused expert weight of layer {layer} of this "
                                      f"{model_type} model (dense layers have none).")
                parameters.append(path)
                shapes[path] = shape
                trainable += adapter.rank * shape[0] * (shape[1] + shape[2])
                continue
            path = family.module_path(layer, canon)
            shape = structure.linears.get(path)
            if shape is None:
                raise TargetError(
                    f"Module {canon!r} ({path}) is not a linear layer of this {model_type} model. "
                    f"Valid module names: {', '.join(family.names)}."
                )
            modules.append(path)
            shapes[path] = shape
            trainable += adapter.rank * (shape[0] + shape[1])
    return TargetPlan("lora", modules, layers, trainable, total, shapes, parameters)
