"""One loaded base model serving every variant of a study: adapters are swapped, never merged.

LoRA checkpoints are loaded as named PEFT adapters onto the single base model and activated in
turn; the base itself is evaluated with adapters disabled; a full fine-tuning checkpoint is a
different model and is loaded on its own while it is evaluated. Nothing merged is written to disk.

While one adapter is in use it is folded into the weights in memory (PEFT's merge_adapter): an
unmerged LoRA layer runs two extra matmuls per call, which on small models costs more than the
merge itself. The adapted base weights are copied to host memory first and copied back afterwards,
so the base is restored bit for bit (unmerging by subtraction would drift in bf16).
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from lorasafe.config.schema import ModelConfig
from lorasafe.models.loading import load_model


class ModelPool:
    def __init__(self, cfg: ModelConfig):
        self.cfg = cfg
        self._base: Any = None
        self._peft: Any = None
        self._adapters: set[str] = set()
        self.loads = 0  # base-model loads, for tests and benchmarks

    @property
    def base(self) -> Any:
        if self._base is None:
            self._base = load_model(self.cfg)
            self._base.eval()
            self.loads += 1
        return self._base

    @contextmanager
    def model_for(self, method: str, weights: Path | None) -> Iterator[Any]:
        """The model to evaluate for `method` with checkpoint `weights` (None for the base)."""
        if method == "none":
            if self._peft is not None:
                with self._peft.disable_adapter():
                    yield self._peft
            else:
                yield self.base
        elif method == "lora":
            model = self._lora(Path(weights))
            with _merged(model):
                yield model
        elif method == "full":
            model = load_model(self.cfg, path=str(weights))
            model.eval()
            try:
                yield model
            finally:
                del model
        else:
            raise ValueError(f"unknown method {method!r}")

    def _lora(self, weights: Path) -> Any:
        from peft import PeftModel

        name = "a" + hashlib.sha1(str(weights.resolve()).encode()).hexdigest()[:12]
        if self._peft is None:
            self._peft = PeftModel.from_pretrained(self.base, str(weights), adapter_name=name)
        elif name not in self._adapters:
            self._peft.load_adapter(str(weights), adapter_name=name)
        self._adapters.add(name)
        self._peft.set_adapter(name)
        self._peft.eval()
        return self._peft


@contextmanager
def _merged(model: Any) -> Iterator[None]:
    """The active adapter folded into the weights for the duration, then the exact base restored."""
    import torch
    from peft.tuners.lora import LoraLayer

    active = model.active_adapter
    layers = [m for m in model.modules() if isinstance(m, LoraLayer) and active in m.lora_A]
    backup = [(m, _adapted(m).detach().to("cpu", copy=True)) for m in layers]
    model.merge_adapter([active])
    try:
        yield
    finally:
        model.unmerge_adapter()
        with torch.no_grad():
            for m, w in backup:
                _adapted(m).copy_(w)


def _adapted(layer: Any) -> Any:
    """The base tensor a LoRA layer adapts: a linear layer's weight, or the expert parameter a PEFT ParamWrapper
    wraps (MoE target_parameters)."""
    get_param = getattr(layer, "get_param", None)
    return get_param() if get_param is not None else layer.get_base_layer().weight
