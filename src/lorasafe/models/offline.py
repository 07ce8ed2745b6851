"""Hub ids without the hub: one short reachability check, the local cache, then config-only copies.

A hub id on a machine that cannot reach the Hugging Face hub used to cost ~25 s of retries per
file before failing. Now the hub is asked once per process (one HEAD request, 2 s; HF_HUB_OFFLINE
set means no request at all); when it does not answer, every load of a hub id is local-only
(`local_files_only=True`: the HF cache still serves what it holds), and a model config missing from
the cache comes from a config-only directory (`configs/models/index.yaml` maps hub ids to
directories holding config.json and, where known, tokenizer_config.json): enough for `lorasafe
targets` and `sweep plan`, which resolve targets from the config alone. One log line says so.
Must not import torch.
"""

from __future__ import annotations

import logging
import os
import threading
import urllib.error
import urllib.request
from functools import lru_cache
from pathlib import Path

log = logging.getLogger("lorasafe")
PROBE_TIMEOUT_S = 2.0
_TRUE = {"1", "true", "yes", "on"}


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


@lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """Whether the hub answers one HEAD request within PROBE_TIMEOUT_S (any HTTP status counts as an answer).
    Run in a thread so a slow DNS lookup cannot hold the caller past the timeout."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        return False
    answered: list[bool] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint(), method="HEAD"), timeout=PROBE_TIMEOUT_S)
            answered.append(True)
        except urllib.error.HTTPError:  # a status code is an answer: the hub is there
            answered.append(True)
        except Exception:  # noqa: BLE001 - DNS, refused, timeout, TLS: all mean "not reachable from here"
            answered.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(PROBE_TIMEOUT_S + 0.5)
    return bool(answered and answered[0])


def config_dirs() -> list[Path]:
    """Where config-only model directories are looked for: $LORASAFE_MODEL_CONFIGS, ./configs/models, and the
    source checkout's configs/models (an editable install)."""
    out = []
    env = os.environ.get("LORASAFE_MODEL_CONFIGS")
    if env:
        out.append(Path(env))
    out.append(Path.cwd() / "configs" / "models")
    out.append(Path(__file__).resolve().parents[3] / "configs" / "models")
    seen, unique = set(), []
    for d in out:
        key = d.resolve() if d.exists() else d
        if key not in seen and (d / "index.yaml").is_file():
            seen.add(key)
            unique.append(d)
    return unique


def config_only_dir(hub_id: str) -> Path | None:
    """The config-only directory registered for `hub_id` in an index.yaml, if any."""
    import yaml

    for root in config_dirs():
        index = yaml.safe_load((root / "index.yaml").read_text(encoding="utf-8")) or {}
        name = index.get(hub_id)
        if name and (root / name / "config.json").is_file():
            return root / name
    return None


_said: set[str] = set()


def say_once(key: str, message: str) -> None:
    if key not in _said:
        _said.add(key)
        log.warning(message)
