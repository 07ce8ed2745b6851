"""Fine-tuning methods as strategies: how a method prepares, saves and restores a model.

`lora` goes through PEFT (adapter weights only); `full` trains every parameter of the plain model;
`none` is the untouched base model. A new method is a new class in `METHODS`, not a branch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from lorasafe.config.schema import AdapterConfig
from lorasafe.data.jsonl import write_json_atomic
from lorasafe.models.targets import TargetPlan


class Method(Protocol):
    name: str

    def prepare(self, model: Any, adapter: AdapterConfig, plan: TargetPlan) -> Any:
        """Make `model` trainable the method's way; returns the model to train."""

    def save(self, model: Any, path: Path, state: dict | None = None) -> None:
        """Write what evaluation needs to reproduce the trained model (safetensors); `state`: the whole weights
        when the model itself holds only this process's shards (training/sharding.py)."""

    def restore(self, model: Any, path: Path) -> None:
        """Load trainable weights written by `save` into a model from `prepare` (resume)."""


class Lora:
    name = "lora"

    def prepare(self, model: Any, adapter: AdapterConfig, plan: TargetPlan) -> Any:
        from peft import LoraConfig, get_peft_model

        from peft.tuners.lora import ParamWrapper

        # Expert weights (MoE) are plain parameters: PEFT reaches them only through target_parameters;
        # target_modules=[] then says "no modules" (a regex matching nothing would be an error).
        config = LoraConfig(r=adapter.rank, lora_alpha=adapter.alpha, lora_dropout=adapter.dropout,
                            target_modules=plan.peft_regex if plan.modules else [],
                            target_parameters=list(plan.parameters) or None, bias="none", task_type="CAUSAL_LM")
        peft_model = get_peft_model(model, config)
        matched, wrapped = [], []
        for n, m in peft_model.named_modules():
            if not (hasattr(m, "lora_A") and n.startswith("base_model.model.")):
                continue
            if isinstance(m, ParamWrapper):  # one wrapper per parameter, nested when a module has several
                wrapped.append(f"{n.removeprefix('base_model.model.').replace('.base_layer', '')}.{m.parameter_name}")
            else:
                matched.append(n.removeprefix("base_model.model."))
        # the plan and PEFT must agree exactly
        if sorted(matched) != sorted(plan.modules) or sorted(wrapped) != sorted(plan.parameters):
            raise RuntimeError(f"PEFT matched {len(matched)} modules and {len(wrapped)} expert parameters, the plan "
                               f"resolved {len(plan.modules)} and {len(plan.parameters)}")
        return peft_model

    def save(self, model: Any, path: Path, state: dict | None = None) -> None:
        model.save_pretrained(str(path), safe_serialization=True)

    def restore(self, model: Any, path: Path) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(str(path / "adapter_model.safetensors")))


class Full:
    name = "full"

    def prepare(self, model: Any, adapter: AdapterConfig, plan: TargetPlan) -> Any:
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def save(self, model: Any, path: Path, state: dict | None = None) -> None:
        model.save_pretrained(str(path), safe_serialization=True, **({"state_dict": state} if state else {}))
        if state:  # save_pretrained writes the dtype of the model's (fp32 master) shards; the weights say otherwise
            dtypes = {str(v.dtype).removeprefix("torch.") for v in state.values() if v.is_floating_point()}
            config = path / "config.json"
            data = json.loads(config.read_text())
            if len(dtypes) == 1 and data.get("dtype") not in dtypes:
                write_json_atomic(config, {**data, "dtype": dtypes.pop()})

    def restore(self, model: Any, path: Path) -> None:
        from safetensors.torch import load_file

        index = path / "model.safetensors.index.json"  # past save_pretrained's shard size, several files
        files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() \
            else ["model.safetensors"]
        state = {k: v for f in files for k, v in load_file(str(path / f)).items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        tied = set(getattr(model, "_tied_weights_keys", None) or [])
        if unexpected or any(k not in tied and "lm_head" not in k for k in missing):
            raise RuntimeError(f"checkpoint {path} does not match the model: missing {missing}, unexpected {unexpected}")
        if missing:
            model.tie_weights()


METHODS: dict[str, Method] = {"lora": Lora(), "full": Full()}
