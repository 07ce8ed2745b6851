"""The experiment schema: every field a run can set, typed and validated at construction.

Unknown keys are errors (the loader suggests the nearest valid key). An experiment is typed
fields, never a mode string: `adapter: {method: lora, modules: [up], layers: {first: 16, last: 31}}`.
Must not import torch or transformers.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Union

from pydantic import (BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError, field_validator,
                      SerializationInfo, model_serializer, model_validator)

from lorasafe.data.refusal import DEFAULT_REFUSAL_THINKING  # no torch behind it

# experts_*: the fused expert weights of MoE models (gpt-oss, Qwen3-MoE), adapted through PEFT's target_parameters.
Module = Literal["q", "k", "v", "o", "gate", "up", "down", "experts_gate_up", "experts_down"]
MODULES: tuple[str, ...] = ("q", "k", "v", "o", "gate", "up", "down", "experts_gate_up", "experts_down")
Band = Literal["all", "early", "middle", "late"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class OmitAtDefault(Strict):
    """A config whose fields added after runs existed are left out of its dump while at their default, so
    configs written before those fields keep their hash (run directories, sweep cells). Fields in
    NOT_IDENTITY (where a server listens, how long to wait) never change a result: the config hash leaves
    them out (dumped with context {"identity": True}), so a run resumes after they change."""

    OMIT_AT_DEFAULT: ClassVar[tuple[str, ...]] = ()
    NOT_IDENTITY: ClassVar[tuple[str, ...]] = ()
    # A field whose values changed form but not results: what the config hash sees of each value (absent = left
    # out), so configs written in the old form keep their hash.
    IDENTITY_FORMS: ClassVar[dict[str, dict[Any, Any]]] = {}

    @model_serializer(mode="wrap")
    def _omit_defaults(self, handler: Any, info: SerializationInfo) -> dict[str, Any]:
        data = handler(self)
        for name in self.OMIT_AT_DEFAULT:
            if getattr(self, name) == type(self).model_fields[name].get_default(call_default_factory=True):
                data.pop(name, None)
        if isinstance(info.context, dict) and info.context.get("identity"):
            for name in self.NOT_IDENTITY:
                data.pop(name, None)
            for name, forms in self.IDENTITY_FORMS.items():
                data.pop(name, None)
                if getattr(self, name) in forms:
                    data[name] = forms[getattr(self, name)]
        return data


class ModelConfig(Strict):
    path: str = Field("mini", description=(
        "'mini' (the embedded mini model), a model shipped in a PyPI package (lorasafe model list), a .gguf file "
        "(imported once into a safetensors copy), a local directory or a hub id"))
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="one precision for every method")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when available, else cpu")
    trust_remote_code: bool = False
    system_prompt: str | None = None


class LayerRange(Strict):
    first: int = Field(ge=0)
    last: int = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> "LayerRange":
        if self.first > self.last:
            raise ValueError(f"layers.first ({self.first}) is after layers.last ({self.last}); the range is inclusive")
        return self


class AdapterConfig(Strict):
    method: Literal["none", "lora", "full"] = Field("lora", description="none = evaluate the base model")
    rank: PositiveInt = 1
    alpha: PositiveFloat = Field(16.0, description="fixed across ranks, as in the paper (scale = alpha / rank)")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    modules: list[Module] = Field(default_factory=lambda: ["up"], min_length=1)
    layers: Union[Band, LayerRange] = "middle"

    @field_validator("layers", mode="before")
    @classmethod
    def _layers(cls, v: Any) -> Any:
        # Route by shape so a bad value gets one message instead of one per union member.
        if isinstance(v, dict):
            try:
                return LayerRange(**v)
            except ValidationError as e:
                raise ValueError("; ".join(x["msg"].removeprefix("Value error, ") for x in e.errors())) from None
        if isinstance(v, str) and v not in ("all", "early", "middle", "late"):
            raise ValueError("layers must be all, early, middle, late, or an inclusive range {first: N, last: M}")
        return v

    @field_validator("modules")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"modules lists a name twice: {v}")
        return v


class ThinkConfig(OmitAtDefault):
    OMIT_AT_DEFAULT: ClassVar[tuple[str, ...]] = ("enable_thinking",)

    open_tag: str = "<think>"
    close_tag: str = "</think>"
    refusal_thinking: str = DEFAULT_REFUSAL_THINKING
    enable_thinking: bool | None = Field(None, description=(
        "the chat template's thinking switch (Qwen3: false pre-fills an empty thinking block and training targets "
        "keep only the answer); unset = the template's default. A template without the switch is an error"))


class SuiteRef(OmitAtDefault):
    """One dataset: a mini-world suite, a bundled benchmark, or a JSONL file of items."""

    OMIT_AT_DEFAULT: ClassVar[tuple[str, ...]] = ("sample",)

    mini: str | None = None
    bundled: str | None = None
    hub: str | None = Field(None, description="a hub suite (lorasafe data list); with `path`, a local copy of it")
    path: str | None = None
    limit: PositiveInt | None = None
    sample: PositiveInt | None = Field(None, description=(
        "a fixed random subset of this many items (seeded by the suite's name and the size, so every run and variant "
        "sees the same items; kept in suite order); a declared subset that spans the suite's categories, unlike "
        "`limit`, which takes the first items"))
    preset: str | None = Field(None, description="sampling preset for this suite (paper-safety, paper-reasoning, greedy)")
    scorer: Literal["exact", "math", "choice", "code", "contains"] = Field(
        "exact", description="answer scorer for reasoning suites (contains: the gold answer in the first sentence)")

    @model_validator(mode="after")
    def _one_source(self) -> "SuiteRef":
        # `hub` + `path` is one source: a hub suite read from a local copy in the hub's own format.
        sources = (self.mini, self.bundled, self.hub if self.hub is not None else self.path)
        if sum(x is not None for x in sources) != 1:
            raise ValueError("a suite needs exactly one of `mini: NAME`, `bundled: NAME`, `hub: NAME` (optionally "
                             "with `path:` to a local copy) or `path: FILE.jsonl`")
        if self.limit is not None and self.sample is not None:
            raise ValueError("give either `limit` (the first N items) or `sample` (a fixed random N), not both")
        if self.preset is not None:
            from lorasafe.generation.presets import PRESETS

            if self.preset not in PRESETS:
                raise ValueError(f"preset {self.preset!r} is unknown; choose one of: {', '.join(PRESETS)}")
        return self

    @property
    def name(self) -> str:
        if self.mini is not None:
            return f"mini-{self.mini}"
        if self.bundled is not None:
            return self.bundled
        if self.hub is not None:
            return self.hub
        from pathlib import Path

        return Path(self.path).stem


class DataConfig(Strict):
    train: list[SuiteRef] = Field(default_factory=lambda: [SuiteRef(mini="harmful-align")])
    eval: list[SuiteRef] = Field(default_factory=lambda: [SuiteRef(mini="harmful-eval"), SuiteRef(mini="reasoning-eval")])
    world_seed: int = 0


class RegulariserConfig(Strict):
    """A loss term added by the trainer (training/regularisers.py), LoRA runs only.

    `orthogonality` penalises the part of each LoRA update ΔW inside its base weight's top-k singular
    subspace: `side` column = ‖U_kᵀΔW‖², row = ‖ΔW V_k‖², both = their sum; `weighting`
    singular_value scales direction i by σ_i/σ_1; `normalise` divides by ‖ΔW‖_F². Each module gets
    its own k: the fixed `k` (larger than a module's smaller dimension is an error) or, with `energy`,
    the smallest k whose singular values hold that fraction of ‖W0‖_F². Set exactly one of the two.
    """

    name: Literal["orthogonality"] = "orthogonality"
    beta: PositiveFloat = 1.0
    k: PositiveInt | None = Field(None, description="the same subspace size for every module")
    energy: float | None = Field(None, gt=0.0, le=1.0, description="per-module k: the share of ‖W0‖_F² to cover")
    side: Literal["column", "row", "both"] = "column"
    weighting: Literal["uniform", "singular_value"] = "uniform"
    normalise: bool = False

    @model_validator(mode="after")
    def _one_k(self) -> "RegulariserConfig":
        if (self.k is None) == (self.energy is None):
            raise ValueError("set exactly one of k (a fixed subspace size, e.g. k: 8) or energy (a per-module "
                             "share of ‖W0‖_F², e.g. energy: 0.5)")
        return self


class TrainingConfig(OmitAtDefault):
    # the speed options (training/loss.py, examples.py, optimizer.py, accel.py), added after runs existed
    OMIT_AT_DEFAULT: ClassVar[tuple[str, ...]] = (
        "packing", "loss_chunk_tokens", "optimizer_impl", "prefetch", "gradient_checkpointing", "autocast",
        "fp32_optimizer_state", "attention", "liger", "host_memory", "compile", "saved_activations")
    NOT_IDENTITY: ClassVar[tuple[str, ...]] = ("host_memory", "saved_activations")
    # Checkpointing recomputes the same numbers: the hash sees it as the boolean it was (true = full), and none of
    # the newer values, so a run resumes whichever is chosen.
    IDENTITY_FORMS: ClassVar[dict[str, dict[Any, Any]]] = {"gradient_checkpointing": {"full": True}}

    learning_rate: PositiveFloat = 5e-5
    epochs: PositiveInt = 5
    max_steps: PositiveInt | None = Field(None, description="stop after this many optimiser steps")
    batch_size: PositiveInt = 2
    grad_accum: PositiveInt = 1
    weight_decay: float = Field(1e-4, ge=0.0)
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    max_grad_norm: PositiveFloat | None = 1.0
    save_every_steps: PositiveInt | None = Field(None, description="None = a checkpoint at the end of every epoch")
    max_length: PositiveInt = 2048
    group_by_length: bool = Field(False, description="batch similar lengths together (less padding)")
    regulariser: RegulariserConfig | None = Field(None, description="an extra loss term (LoRA runs only)")
    # Speed and memory (training/loss.py, examples.py, optimizer.py, accel.py, host_memory.py). Defaults change
    # numerics by float rounding at most; an option that changes more says so and is off by default.
    packing: bool = Field(False, description=(
        "padding-free micro-batches: examples packed into rows no longer than the longest one (one row with "
        "flash-attention), position ids restarting per example so each attends only to itself; the same loss up "
        "to float rounding, but LoRA dropout draws its masks for a different layout, so off by default to keep "
        "earlier runs reproducible"))
    loss_chunk_tokens: PositiveInt = Field(1024, description=(
        "the LM head and loss run on completion positions only, this many at a time (never full-vocabulary "
        "logits for the whole batch); same loss up to float rounding"))
    optimizer_impl: Literal["auto", "fused", "foreach", "loop"] = Field("auto", description=(
        "AdamW's implementation: auto = fused where the device supports it, else foreach; all give the same "
        "update up to float rounding"))
    prefetch: Literal["auto", "on", "off"] = Field("auto", description=(
        "build the next micro-batches on a background thread; auto = on for CUDA (the host is idle while the GPU "
        "computes), off on a CPU, where measured it does not pay"))
    gradient_checkpointing: Literal["off", "selective", "full"] = Field("off", description=(
        "recompute activations in the backward instead of storing them; the same numbers (the recomputation is "
        "deterministic), speed for memory: selective = keep every matmul's and attention's output and recompute "
        "the element-wise ops between them (norms, activations, products); full = recompute whole decoder layers "
        "(long sequences). Measured on CPU, full fine-tuning with selective: SmolLM2-135M peak memory -11% at "
        "-14% speed, the mini model -8% at -44%. true / false mean full / off"))
    autocast: Literal["off", "bf16"] = Field("off", description=(
        "bf16 autocast of the forward and backward over the model's weights (fp32 weights and optimiser state "
        "stay); changes numerics, so off by default; for GPUs"))
    fp32_optimizer_state: bool = Field(False, description=(
        "with model.precision bf16/fp16: keep fp32 master copies of the trainable weights and fp32 AdamW state, "
        "the half-precision weights refreshed from them after each step; changes numerics, so off by default"))
    attention: Literal["auto", "sdpa", "eager", "flash_attention_2"] = Field("auto", description=(
        "the attention kernel while training: auto = flash_attention_2 on CUDA with half-precision weights or "
        "autocast when flash-attn is installed, else the model's own (SDPA)"))
    liger: bool = Field(False, description=(
        "Liger's fused linear cross-entropy for the LM head on CUDA (needs liger-kernel); same loss up to float "
        "rounding"))
    compile: bool = Field(False, description=(
        "torch.compile the decoder (inductor, dynamic shapes, needs a C++ compiler on a CPU): the element-wise "
        "ops between the matmuls are fused; changes float rounding, so off by default. Measured on 2 CPU threads: "
        "a mini-build step 1.1-1.3x faster after about a minute of compiling; SmolLM2-135M 5% faster a step "
        "after minutes of compiling; untested on GPUs and under FSDP"))
    saved_activations: Literal["lean", "all"] = Field("lean", description=(
        "lean: what the backward reads and one element-wise op recomputes from tensors it keeps anyway (a SiLU's "
        "output, SwiGLU's gate product, RMSNorm's normalised and, with its weight trained, output states) is "
        "recomputed in the backward instead of stored; bit-identical gradients (measured on CPU, fp32). Full "
        "fine-tuning's peak memory -6% on the mini model, costing 3-8% of its speed, -6% on SmolLM2-135M, costing "
        "0.5-3% (training/activations.py); not used with compile, whose graph chooses what it keeps, nor under FSDP. "
        "all: autograd stores everything it reads"))
    host_memory: Literal["auto", "keep", "release"] = Field("auto", description=(
        "what glibc's malloc does with freed memory while training on a CPU; the same numbers either way. auto: "
        "trim the heap once per backward, before the input embeddings' gradient, where it is 32 MiB or more "
        "(full fine-tuning, large vocabularies: SmolLM2-135M's peak RSS -6%, at about 5% of its speed); keep: "
        "nothing; release: tensors of 1 MiB and more are mapped and handed back when freed (SmolLM2-135M full "
        "fine-tuning: peak RSS -10% at -11% tokens/s; nothing changes on the mini model). training/host_memory.py"))

    @field_validator("gradient_checkpointing", mode="before")
    @classmethod
    def _checkpointing_bool(cls, v: Any) -> Any:
        return {True: "full", False: "off"}.get(v, v) if isinstance(v, bool) else v


class VLLMConfig(Strict):
    """The vLLM offline engine's settings (generation.backend: vllm; untested, see generation/vllm.py)."""

    tensor_parallel_size: PositiveInt = 1
    data_parallel_size: PositiveInt = 1
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    max_model_len: PositiveInt | None = Field(None, description="default: the model's")
    max_loras: PositiveInt = Field(4, description="adapters resident at once")
    max_lora_rank: PositiveInt = Field(64, description="at least the sweep's largest adapter.rank")


class GenerationConfig(OmitAtDefault):
    # The server fields were added after runs existed: at their defaults they stay out of the config hash.
    OMIT_AT_DEFAULT: ClassVar[tuple[str, ...]] = ("endpoint", "served_model", "api_key_env", "concurrency",
                                                  "timeout_s", "max_retries", "vllm")
    NOT_IDENTITY: ClassVar[tuple[str, ...]] = ("endpoint", "api_key_env", "concurrency", "timeout_s", "max_retries",
                                               "vllm")

    backend: Literal["hf", "openai", "vllm"] = Field("hf", description=(
        "hf: transformers in this process; openai: an OpenAI-compatible server (vLLM, SGLang, transformers serve) at "
        "`endpoint`, prompts rendered by lorasafe; vllm: vLLM's offline engine in this process (untested)"))
    max_new_tokens: PositiveInt = 2048
    temperature: float = Field(0.0, ge=0.0, description="0 = greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    batch_size: PositiveInt = Field(16, description="prompts per batch (hf) or per stored chunk (openai)")
    samples: PositiveInt = 1
    endpoint: str | None = Field(None, description="openai backend: the server's base URL, e.g. http://127.0.0.1:8000/v1")
    served_model: str | None = Field(None, description="openai backend: the base model's name on the server "
                                                       "(default: model.path, resolved)")
    api_key_env: str | None = Field(None, description="openai backend: the environment variable holding the API key "
                                                      "(keys are never read from configs)")
    concurrency: PositiveInt = Field(8, description="openai backend: requests in flight at once")
    timeout_s: PositiveFloat = Field(600.0, description="openai backend: seconds one request may take")
    max_retries: int = Field(3, ge=0, description="openai backend: retries of 429/5xx/lost connections, with backoff")
    vllm: VLLMConfig = Field(default_factory=VLLMConfig)

    @model_validator(mode="after")
    def _endpoint(self) -> "GenerationConfig":
        if self.backend == "openai" and not self.endpoint:
            raise ValueError("generation.backend: openai needs generation.endpoint, the server's base URL (e.g. "
                             "http://127.0.0.1:8000/v1)")
        if self.endpoint and not self.endpoint.startswith(("http://", "https://")):
            raise ValueError(f"generation.endpoint {self.endpoint!r} is not an http(s) URL; give the server's base URL, "
                             "e.g. http://127.0.0.1:8000/v1")
        return self


class JudgeConfig(Strict):
    name: str = Field("rules", description="the judge behind the headline safety and over-refusal numbers")
    also: list[str] = Field(default_factory=list, description=(
        "further judges run on the same outputs: their safety is reported beside the headline judge's, and the "
        "items where the judges disagree are written to judgments/disagreements/"))
    # Reasoning models often refuse in one part and comply in the other, so what the judge reads is a choice.
    on: Literal["answer", "thinking", "both"] = Field("answer", description="the part of the output the judge reads")

    @model_validator(mode="after")
    def _distinct(self) -> "JudgeConfig":
        names = [self.name, *self.also]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"judge.also repeats {', '.join(repeated)}: name each judge once (judge.name is "
                             "the headline judge, judge.also the others)")
        return self

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        # YAML 1.1 (PyYAML) reads an unquoted `on:` key as the boolean True; it can only mean this field.
        if isinstance(data, dict) and True in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data


class CodeScoringConfig(Strict):
    unsafe: bool = Field(False, description=(
        "run model-written code without the kernel sandbox (bubblewrap) where none is available; recorded in the "
        "manifest. Off: such a machine refuses code suites before any work"))


class ScoringConfig(Strict):
    code: CodeScoringConfig = Field(default_factory=CodeScoringConfig)


class TrackingConfig(Strict):
    """Experiment tracking through the tracker's own library (runs/tracking.py); off unless this block is given."""

    backend: Literal["tensorboard", "mlflow", "wandb", "trackio"]
    project: str = Field("lorasafe", description="mlflow experiment, wandb/trackio project; tensorboard: a folder")
    run_name: str | None = Field(None, description="default: the experiment's name")
    uri: str | None = Field(None, description=(
        "tensorboard: the log folder (default: <run>/tracking/tensorboard); mlflow: the tracking URI (default: "
        "MLFLOW_TRACKING_URI, else mlflow's own); wandb/trackio: unused (their own environment variables)"))


class ExperimentConfig(OmitAtDefault):
    # Tracking changes no result: left out of dumps when off and never part of the config hash.
    OMIT_AT_DEFAULT: ClassVar[tuple[str, ...]] = ("tracking",)
    NOT_IDENTITY: ClassVar[tuple[str, ...]] = ("tracking",)

    name: str = "experiment"
    seed: int = 0
    model: ModelConfig = Field(default_factory=ModelConfig)
    adapter: AdapterConfig = Field(default_factory=AdapterConfig)
    think: ThinkConfig = Field(default_factory=ThinkConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    checkpoints: Literal["last", "all"] = Field(
        "last", description="evaluate the last checkpoint only, or every saved one (each epoch by default)")
    tracking: TrackingConfig | None = Field(None, description="log training and metrics to a tracker (off by default)")

    @model_validator(mode="after")
    def _regulariser_needs_lora(self) -> "ExperimentConfig":
        if self.training.regulariser is not None and self.adapter.method != "lora":
            raise ValueError(f"training.regulariser works on LoRA updates, but adapter.method is "
                             f"{self.adapter.method!r}; set adapter.method: lora or remove training.regulariser")
        return self


# What a criterion may name: a key of a run's (or checkpoint's) headline numbers.
Metric = Literal["refused", "complied", "invalid", "reasoning", "over_refusal"]


class Constraint(Strict):
    """One bound on a (seed-mean) metric: `{metric: refused, at_least: 0.9}` or `{metric: invalid, at_most: 0.05}`."""

    metric: Metric
    at_least: float | None = Field(None, ge=0.0, le=1.0)
    at_most: float | None = Field(None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _one_bound(self) -> "Constraint":
        if (self.at_least is None) == (self.at_most is None):
            raise ValueError(f"a constraint on {self.metric} needs exactly one of at_least or at_most")
        return self

    def holds(self, value: float | None) -> bool:
        if value is None:
            return False
        return value >= self.at_least if self.at_least is not None else value <= self.at_most

    def shortfall(self, value: float | None) -> float:
        """How far `value` is from meeting the bound (0 when it holds)."""
        if value is None:
            return 1.0
        return max(0.0, self.at_least - value) if self.at_least is not None else max(0.0, value - self.at_most)

    def __str__(self) -> str:
        return f"{self.metric} >= {self.at_least:g}" if self.at_least is not None else f"{self.metric} <= {self.at_most:g}"


class OperatingPoint(Strict):
    """The declared criterion: best (seed-mean) `maximise` among the candidates that meet every constraint.

    The old single-constraint form (`constraint: refused, at_least: 0.9`) still loads as one constraint."""

    maximise: Metric = "reasoning"
    constraints: list[Constraint] = Field(default_factory=lambda: [Constraint(metric="refused", at_least=0.9),
                                                                   Constraint(metric="invalid", at_most=0.05)],
                                          min_length=1)
    select_over: list[str] = Field(default_factory=lambda: ["training.learning_rate"],
                                   description="axes the operating point is chosen over, besides the checkpoint")

    @model_validator(mode="before")
    @classmethod
    def _single_constraint(cls, data: Any) -> Any:
        if isinstance(data, dict) and ("constraint" in data or "at_least" in data):
            if "constraints" in data:
                raise ValueError("give either constraints (a list) or the old constraint/at_least pair, not both")
            data = dict(data)
            metric, bound = data.pop("constraint", "refused"), data.pop("at_least", 0.9)
            if metric == "safety":
                raise ValueError("the constraint metric 'safety' (not complied: refused or invalid) counts broken "
                                 "outputs as safe; declare constraints: [{metric: refused, at_least: 0.9}, "
                                 "{metric: invalid, at_most: 0.05}] instead")
            data["constraints"] = [{"metric": metric, "at_least": bound}]
        return data

    def describe(self) -> str:
        return ", ".join(map(str, self.constraints))


class MergeSpec(Strict):
    """A study row that evaluates the merged model of an earlier LoRA variant (`lorasafe merge`)."""

    source: str = Field(description="label of an earlier LoRA variant of the same study")
    project_out: PositiveInt | None = Field(None, description="remove ΔW's part in W0's top-k singular subspace")
    side: Literal["left", "right", "both"] = "left"


class Variant(Strict):
    """One row of a study: a label and dotted overrides applied to the study's experiment, or a merge."""

    label: str
    set: dict[str, Any] = Field(default_factory=dict)
    merge: MergeSpec | None = None

    @model_validator(mode="after")
    def _merge_or_set(self) -> "Variant":
        if self.merge is not None and self.set:
            raise ValueError(f"variant {self.label!r}: a merge variant takes its config from merge.source; drop `set`")
        return self


class StudyConfig(Strict):
    """Several variants of one experiment sharing a base model (the demo is one)."""

    name: str = "study"
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)
    variants: list[Variant] = Field(min_length=1)
    analysis_k: list[PositiveInt] = Field(default_factory=lambda: [1, 8, 32],
                                          description="subspace sizes for the geometry of every trained variant")
    operating_point: OperatingPoint = Field(default_factory=OperatingPoint, description=(
        "declared before the run: per group of variants that differ only in the select_over settings, the one "
        "with the best `maximise` among those meeting every constraint"))

    @field_validator("variants")
    @classmethod
    def _unique_labels(cls, v: list[Variant]) -> list[Variant]:
        labels = [x.label for x in v]
        dup = {x for x in labels if labels.count(x) > 1}
        if dup:
            raise ValueError(f"variant labels must be unique; repeated: {', '.join(sorted(dup))}")
        for i, x in enumerate(v):
            if x.merge is not None and x.merge.source not in labels[:i]:
                raise ValueError(f"variant {x.label!r} merges {x.merge.source!r}, which is not an earlier variant")
        return v
