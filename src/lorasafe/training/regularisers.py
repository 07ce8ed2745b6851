"""Regularisers: loss terms the trainer adds to the SFT loss, never a patched forward.

Owns the `Regulariser` protocol, its registry (config name -> class) and the orthogonality
regulariser. That one keeps, per LoRA module, the top-k singular vectors of the module's own base
weight, with that module's own k (the official code overwrote one shared k in its loop), as plain
attributes on the regulariser: they are recomputed from the base weights when training starts or
resumes and never enter a checkpoint. Modules are found through PEFT's LoRA layer type, not by
name substrings, so LoRA's own sub-layers never get a reference. The penalty is computed from the
factors (ΔW = s·B·A is never materialised).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from lorasafe.config.schema import RegulariserConfig
from lorasafe.errors import ConfigError


class Regulariser(Protocol):
    name: str

    def penalty(self) -> Any:
        """The scalar to add to the loss (strength included), differentiable in the trainable weights."""


REGULARISERS: dict[str, Callable[[Any, RegulariserConfig], Regulariser]] = {}


def register_regulariser(name: str):
    def deco(cls):
        REGULARISERS[name] = cls
        return cls
    return deco


def build_regulariser(model: Any, cfg: RegulariserConfig | None) -> Regulariser | None:
    return None if cfg is None else REGULARISERS[cfg.name](model, cfg)


@dataclass
class _Reference:
    module: Any  # the PEFT LoRA layer
    k: int
    U: Any  # out × k, float32 on the module's device
    V: Any  # in × k
    weight: Any  # (k,) direction weights: 1, or σ_i / σ_1


def energy_k(singular_values: Any, energy: float) -> int:
    """The smallest k whose singular values hold `energy` of Σσ² (the squared Frobenius norm)."""
    import torch

    share = torch.cumsum(singular_values.double() ** 2, 0) / (singular_values.double() ** 2).sum()
    return int(torch.searchsorted(share, torch.tensor(energy, dtype=share.dtype) - 1e-12).item()) + 1


@register_regulariser("orthogonality")
class OrthogonalityRegulariser:
    name = "orthogonality"

    def __init__(self, model: Any, cfg: RegulariserConfig):
        import torch
        from peft.tuners.lora import LoraLayer

        self.cfg = cfg
        self.refs: dict[str, _Reference] = {}
        for name, module in model.named_modules():
            if not isinstance(module, LoraLayer):
                continue
            w0 = module.get_base_layer().weight.detach()
            u, s, vh = torch.linalg.svd(w0.double(), full_matrices=False)
            k = cfg.k if cfg.energy is None else energy_k(s, cfg.energy)
            if k > min(w0.shape):
                raise ConfigError(f"training.regulariser.k={k} is larger than module {name} allows (weight "
                                  f"{tuple(w0.shape)}, so k <= {min(w0.shape)}); lower k or use energy instead.")
            weight = s[:k] / s[0] if cfg.weighting == "singular_value" else torch.ones(k, dtype=torch.float64)
            f32 = dict(dtype=torch.float32, device=w0.device)
            self.refs[name] = _Reference(module, k, u[:, :k].to(**f32), vh[:k].T.to(**f32), weight.to(**f32))
        if not self.refs:
            raise ConfigError("training.regulariser needs LoRA modules, and the model has none.")

    def ks(self) -> dict[str, int]:
        return {name: ref.k for name, ref in self.refs.items()}

    def module_penalty(self, ref: _Reference) -> Any:
        """The unscaled penalty of one module, from its LoRA factors."""
        m = ref.module
        adapter = m.active_adapters[0]
        a = m.lora_A[adapter].weight.float()  # r × in
        b = m.lora_B[adapter].weight.float()  # out × r
        s = m.scaling[adapter]
        w = ref.weight[:, None]
        pen = 0.0
        if self.cfg.side in ("column", "both"):
            pen = pen + (w * ((ref.U.T @ b) @ a)).pow(2).sum()  # ‖D Uᵀ B A‖²
        if self.cfg.side in ("row", "both"):
            pen = pen + (b @ (a @ ref.V) * w.T).pow(2).sum()  # ‖B A V D‖²
        pen = pen * s * s
        if self.cfg.normalise:
            total = s * s * ((b.T @ b) * (a @ a.T)).sum()  # ‖s B A‖_F² = s² tr(BᵀB · AAᵀ)
            pen = pen / (total + 1e-12)
        return pen

    def penalty(self) -> Any:
        return self.cfg.beta * sum(self.module_penalty(ref) for ref in self.refs.values())
