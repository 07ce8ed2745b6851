"""What every variant on one base model shares: config, tokenizer, chat renderer, loaded model.

Built once per (model, think format) and reused, so a study loads its tokenizer and base model
once. Targets are resolved from the model's structure alone (models/structure.py), before any weights
load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from lorasafe.config.schema import AdapterConfig, ExperimentConfig
from lorasafe.data.chat import ChatRenderer
from lorasafe.data.suites import think_format
from lorasafe.models.fingerprint import fingerprint
from lorasafe.models.loading import config_source, load_config, load_tokenizer, resolve_path
from lorasafe.models.pool import ModelPool
from lorasafe.models.structure import ModelStructure, known_structure, remember
from lorasafe.models.targets import TargetPlan, plan_targets


@dataclass
class BaseContext:
    cfg: ExperimentConfig  # only model and think fields are used: they define the context
    _plans: dict[str, TargetPlan] = field(default_factory=dict)

    @staticmethod
    def key(cfg: ExperimentConfig) -> str:
        return cfg.model.model_dump_json() + cfg.think.model_dump_json()

    @cached_property
    def model_config(self) -> Any:
        return load_config(self.cfg.model)

    @cached_property
    def structure(self) -> ModelStructure:
        """Stored when this config.json was measured before (no torch import), else measured on the meta device."""
        source = Path(config_source(self.cfg.model))
        structure = known_structure(source) if source.is_dir() else None
        if structure is None:
            structure = ModelStructure.measure(self.model_config)
            if source.is_dir():
                remember(source, structure)
        return structure

    def plan(self, adapter: AdapterConfig) -> TargetPlan:
        k = adapter.model_dump_json()
        if k not in self._plans:
            self._plans[k] = plan_targets(adapter, self.structure)
        return self._plans[k]

    @cached_property
    def fingerprint(self) -> str | None:
        """The base weights' identity (models/fingerprint.py): a run resumes only over the weights it began with."""
        return fingerprint(resolve_path(self.cfg.model.path))

    @cached_property
    def tokenizer(self) -> Any:
        return load_tokenizer(self.cfg.model)

    @cached_property
    def renderer(self) -> ChatRenderer:
        return ChatRenderer(self.tokenizer, think_format(self.cfg.think), self.cfg.model.system_prompt)

    @cached_property
    def eos_ids(self) -> list[int]:
        """Generation stops at the tokenizer's EOS and at the template's end-of-turn token."""
        tok = self.tokenizer
        ids = {tok.eos_token_id}
        eot = tok.convert_tokens_to_ids(self.renderer.end_of_turn) if self.renderer.end_of_turn else None
        if isinstance(eot, int) and eot != tok.unk_token_id:
            ids.add(eot)
        return sorted(i for i in ids if i is not None)

    @cached_property
    def pool(self) -> ModelPool:
        return ModelPool(self.cfg.model)
