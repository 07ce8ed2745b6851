"""The OpenAI-compatible server backend (`generation.backend: openai`): vLLM serve, SGLang, `transformers serve`.

lorasafe renders each prompt itself (chat template, thinking prefill) and sends it to the server's
legacy `/v1/completions` endpoint, so the thinking conventions are lorasafe's whatever the server's
chat handling does. Requests go out `generation.concurrency` at a time through the `openai` client,
which retries 429 and 5xx answers and lost connections with exponential backoff and enforces the
timeout; the store (generation/store.py) keeps every finished batch, so an interrupted run resumes.
Generation stops where the server's model stops (its generation_config's EOS tokens, which for the
chat models of the field include the end-of-turn token the HF backend stops at).

Adapters: a LoRA checkpoint is loaded into the server with `POST /v1/load_lora_adapter` (vLLM and
SGLang; vLLM needs VLLM_ALLOW_RUNTIME_LORA_UPDATING=True), addressed by its name, and unloaded after
its suites; a server without that endpoint gets a clear error that says to serve a merged model
(`lorasafe merge`). A full-fine-tuning checkpoint is a model of its own: serve it and point the run
at that server. The API key is read from the environment variable `generation.api_key_env` names,
never from the config and never written anywhere.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from lorasafe.errors import LorasafeError, require
from lorasafe.generation.base import Completion, SamplingParams

log = logging.getLogger("lorasafe")


def require_openai() -> Any:
    return require("openai", "generation.backend: openai", "pip install 'lorasafe[serve]' (or pip install openai)")


class ServerError(LorasafeError):
    """The server could not be reached or did not answer usably; records written before it are kept."""


class ServerGenerator:
    """Generates through `endpoint`'s /v1/completions; `model` (in `generate`) is the served model's name."""

    def __init__(self, endpoint: str, *, tokenizer: Any = None, api_key_env: str | None = None, concurrency: int = 8,
                 timeout_s: float = 600.0, max_retries: int = 3):
        self.endpoint = endpoint.rstrip("/")
        self.tokenizer = tokenizer
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self._client: Any = None
        self._adds_specials: bool | None = None

    @property
    def client(self) -> Any:
        if self._client is None:
            OpenAI = require_openai().OpenAI  # noqa: N806 - the class
            self._client = OpenAI(base_url=self.endpoint, api_key=self._api_key(), timeout=self.timeout_s,
                                  max_retries=self.max_retries)
        return self._client

    def _api_key(self) -> str:
        if not self.api_key_env:
            return "EMPTY"  # local servers (vLLM, SGLang, transformers serve) accept any key
        key = os.environ.get(self.api_key_env)
        if not key:
            raise LorasafeError(f"generation.api_key_env names {self.api_key_env}, but that environment variable is "
                                "not set. Export it in the shell that runs lorasafe (the key is never read from a "
                                "config file).")
        return key

    def _extra_body(self, prompt: str) -> dict[str, Any]:
        """Servers tokenize a completion prompt with the tokenizer's special tokens added; lorasafe's prompt already
        holds them (the chat template's BOS), so for a tokenizer that adds any, ask the server not to (vLLM and
        SGLang take `add_special_tokens`; a server that refuses the field gets a clear error)."""
        if self._adds_specials is None:
            tok = self.tokenizer
            self._adds_specials = tok is not None and (tok(prompt).input_ids != tok(prompt, add_special_tokens=False).input_ids)
        return {"add_special_tokens": False} if self._adds_specials else {}

    def generate(self, model: Any, prompts: list[str], params: SamplingParams) -> list[Completion]:
        if not prompts:
            return []
        extra = self._extra_body(prompts[0])

        def one(i: int) -> Completion:
            kwargs: dict[str, Any] = dict(model=str(model), prompt=prompts[i], max_tokens=params.max_new_tokens,
                                          temperature=params.temperature, top_p=params.top_p)
            if params.temperature > 0:
                kwargs["seed"] = params.seed + i  # each prompt of a batch its own stream, reproducible on resume
            if extra:
                kwargs["extra_body"] = extra
            resp = self._call(lambda: self.client.completions.create(**kwargs), str(model))
            choice = resp.choices[0]
            truncated = choice.finish_reason == "length"
            # n_tokens counts the generated tokens without the end token, as the hf backend does; a server's
            # completion_tokens includes the EOS it stopped at.
            text = choice.text or ""
            if resp.usage is not None:
                n = resp.usage.completion_tokens - (not truncated)
            else:  # a server that reports no usage: count the text's tokens
                n = len(self.tokenizer(text, add_special_tokens=False).input_ids) if self.tokenizer is not None else 0
            return Completion(text, max(int(n), 0), truncated)

        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
            return list(pool.map(one, range(len(prompts))))

    def _call(self, request: Any, model: str) -> Any:
        """One request, its failures turned into one clear line (the client has already retried what is retryable)."""
        import openai

        try:
            return request()
        except openai.APITimeoutError:
            raise ServerError(f"The server at {self.endpoint} did not answer within generation.timeout_s = "
                              f"{self.timeout_s:g} s (after {self.max_retries} retries). Raise the timeout for long "
                              "outputs, or lower generation.concurrency; finished batches are kept, rerun to resume.") from None
        except openai.APIConnectionError as e:
            raise ServerError(f"Cannot reach the server at {self.endpoint} ({_cause(e)}). Start it (e.g. `vllm serve "
                              "MODEL` or `transformers serve MODEL`) or fix generation.endpoint (its base URL, "
                              "ending in /v1); finished batches are kept, rerun to resume.") from None
        except openai.AuthenticationError:
            raise ServerError(f"The server at {self.endpoint} refused the API key (401). Set the right key in the "
                              f"environment variable {self.api_key_env or '(generation.api_key_env is unset)'}.") from None
        except openai.NotFoundError as e:
            raise ServerError(f"The server at {self.endpoint} does not serve a model named {model!r} ({_detail(e)}). "
                              f"It serves: {', '.join(self.served_models()) or 'nothing it will list'}. Set "
                              "generation.served_model to one of these.") from None
        except openai.BadRequestError as e:
            detail = _detail(e)
            if "add_special_tokens" in detail:
                raise ServerError(f"The server at {self.endpoint} does not accept `add_special_tokens` ({detail}), and "
                                  "this model's tokenizer adds special tokens that lorasafe's rendered prompt already "
                                  "holds (its BOS would be doubled). Serve the model with vLLM or SGLang, which accept "
                                  "the field.") from None
            raise ServerError(f"The server at {self.endpoint} rejected a completion request (400: {detail}).") from None
        except openai.APIStatusError as e:
            raise ServerError(f"The server at {self.endpoint} answered {e.status_code} after {self.max_retries} retries "
                              f"({_detail(e)}); finished batches are kept, rerun to resume.") from None

    # --- the server's models and adapters (plain HTTP: these endpoints are not part of the OpenAI API) ---------
    def served_models(self) -> list[str]:
        try:
            return [m.id for m in self.client.models.list()]
        except Exception:  # noqa: BLE001 - only used to improve an error message
            return []

    def _post(self, path: str, body: dict) -> tuple[int, str]:
        root = self.endpoint[:-3] if self.endpoint.endswith("/v1") else self.endpoint
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            headers["Authorization"] = f"Bearer {self._api_key()}"
        req = urllib.request.Request(f"{root}/v1/{path}", data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                return r.status, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")
        except (urllib.error.URLError, OSError) as e:
            raise ServerError(f"Cannot reach the server at {self.endpoint} ({e}). Start it or fix "
                              "generation.endpoint.") from None

    @contextmanager
    def adapter(self, weights: Path) -> Iterator[str]:
        """A LoRA checkpoint loaded into the server for the duration, yielded as the model name to address."""
        name = "lorasafe-" + hashlib.sha1(str(weights.resolve()).encode()).hexdigest()[:12]
        status, text = self._post("load_lora_adapter", {"lora_name": name, "lora_path": str(weights.resolve())})
        if status in (404, 405):
            raise ServerError(f"The server at {self.endpoint} cannot load LoRA adapters (POST /v1/load_lora_adapter "
                              f"answered {status}). Serve a merged model instead (`lorasafe merge RUN --out DIR`, then "
                              "serve DIR and set generation.served_model), or serve with vLLM "
                              "(--enable-lora, VLLM_ALLOW_RUNTIME_LORA_UPDATING=True).")
        if status >= 400 and "already" not in text.lower():
            raise ServerError(f"The server at {self.endpoint} did not load the adapter {weights} ({status}: "
                              f"{text[:300]}). It must be able to read that path (same machine or shared filesystem).")
        try:
            yield name
        finally:
            status, text = self._post("unload_lora_adapter", {"lora_name": name})
            if status >= 400:
                log.warning("the server did not unload adapter %s (%s: %s)", name, status, text[:200])


def _detail(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        for key in ("detail", "message", "error"):
            if body.get(key):
                v = body[key]
                return (v.get("message") if isinstance(v, dict) else str(v))[:300]
    return str(getattr(e, "message", e))[:300]


def _cause(e: BaseException) -> str:
    inner = e.__cause__ or e.__context__
    while inner is not None and (inner.__cause__ or inner.__context__) is not None:
        inner = inner.__cause__ or inner.__context__
    return f"{type(inner).__name__}: {inner}" if inner is not None else str(e)
