"""Configuration: YAML files mapped onto pydantic models, with CLI flags overriding fields.

Every pipeline owns a config model; the shared pieces (model endpoint, budget, contamination) live here
so that the CLI's global ``--base-url`` / ``--model`` apply to every command the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator

T = TypeVar("T", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for config records: unknown keys are errors, so typos in YAML never pass silently."""

    model_config = ConfigDict(extra="forbid")


class EndpointConfig(StrictModel):
    """An OpenAI-compatible endpoint. ``base_url=None`` means the embedded llama.cpp server."""

    base_url: str | None = None
    model: str = "smollm2"
    api_key_env: str = Field(
        default="OPENAI_API_KEY", description="Name of the environment variable holding the API key."
    )
    max_concurrency: int = Field(default=8, ge=1, description="Requests in flight to this endpoint.")
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=5, ge=0, description="Retries on 429/5xx/timeouts/connection errors.")
    backoff_base_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=20.0, ge=0)
    schema_mode: Literal["auto", "llama_cpp", "openai", "none"] = Field(
        default="auto",
        description=(
            "How to send a JSON schema: llama_cpp = {type: json_object, schema}, openai = json_schema, "
            "none = prompt only; auto picks llama_cpp for the embedded server and openai otherwise."
        ),
    )
    usd_per_1k_prompt_tokens: float | None = None
    usd_per_1k_completion_tokens: float | None = None
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Merged into every chat request (nested mappings merge key by key), e.g. "
            "{chat_template_kwargs: {enable_thinking: false}} or {top_k: 20} for vLLM / SGLang."
        ),
    )
    thinking: Literal["on", "off"] | None = Field(
        default=None,
        description=(
            "Qwen3-style thinking switch: sends chat_template_kwargs.enable_thinking (vLLM, SGLang); "
            "None sends nothing and the server's chat template decides."
        ),
    )
    reasoning_tokens: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Completion tokens added to every capped request for the model's reasoning, which thinking "
            "models count against max_tokens; None = 4096 when thinking is on, else 0."
        ),
    )
    token_limit_param: Literal["auto", "max_tokens", "max_completion_tokens"] = Field(
        default="auto",
        description=(
            "How the completion cap is sent: OpenAI reasoning models take only max_completion_tokens; "
            "auto sends max_tokens and switches for good when the endpoint refuses it (HTTP 400)."
        ),
    )
    temperature_param: Literal["auto", "send", "omit"] = Field(
        default="auto",
        description=(
            "omit: never send temperature / top_p (OpenAI reasoning models accept only the default); "
            "auto sends them and stops for good when the endpoint refuses a temperature (HTTP 400)."
        ),
    )

    def api_key(self) -> str:
        """The key comes only from the environment; local servers accept any placeholder."""
        return os.environ.get(self.api_key_env) or "not-needed"

    def reasoning_budget(self) -> int:
        """Tokens added to each request's cap for reasoning (see ``reasoning_tokens``)."""
        if self.reasoning_tokens is not None:
            return self.reasoning_tokens
        return DEFAULT_REASONING_TOKENS if self.thinking == "on" else 0

    def request_extras(self) -> dict[str, Any]:
        """What every chat request carries besides its own fields: ``extra_body`` with ``thinking``."""
        extras: dict[str, Any] = {}
        if self.thinking is not None:
            extras["chat_template_kwargs"] = {"enable_thinking": self.thinking == "on"}
        return merge_mappings(extras, self.extra_body)


DEFAULT_REASONING_TOKENS = 4096
"""Reasoning allowance per request with ``thinking: on``: Qwen3's thoughts on our stages' prompts run to a
few thousand tokens, and a cap they exhaust returns no answer at all."""


def merge_mappings(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``; where both hold a mapping, the mappings merge key by key."""
    merged = dict(base)
    for key, value in over.items():
        old = merged.get(key)
        merged[key] = (
            merge_mappings(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
        )
    return merged


class BudgetConfig(StrictModel):
    """Hard caps for one run, over all its sessions (a resume counts what earlier ones spent, kept in the run
    dir's ``usage.json``); reaching any of them stops the run cleanly (finished work is kept)."""

    max_calls: int | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=0)
    max_cost_usd: float | None = Field(default=None, ge=0)


@dataclass
class GlobalOptions:
    """The CLI's global endpoint options; every command applies them over its config file."""

    base_url: str | None = None
    model: str | None = None
    thinking: Literal["on", "off"] | None = None

    def overrides(self, prefix: str = "endpoint") -> dict[str, Any]:
        """Dotted overrides for :func:`load_config` (unset options override nothing)."""
        fields = {"base_url": self.base_url, "model": self.model, "thinking": self.thinking}
        return {f"{prefix}.{name}": value for name, value in fields.items()}


class ConfigError(ValueError):
    """A config file or override that does not fit its model; the message names file and field."""


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def load_config(model: type[T], path: Path | None = None, overrides: dict[str, Any] | None = None) -> T:
    """Read ``path`` (YAML) into ``model``; ``overrides`` map dotted field names to values (None = unset).

    Raises ConfigError naming the file and every offending field.
    """
    data: dict[str, Any] = {}
    source = str(path) if path else "<defaults>"
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{source}: file not found") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: invalid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: expected a mapping at the top level, got {type(loaded).__name__}")
        data = loaded
        # Relative paths inside a config resolve against the config file's folder.
        data.setdefault("_config_dir", str(Path(path).resolve().parent))
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, key, value)
    config_dir = data.pop("_config_dir", None)
    try:
        cfg = model.model_validate(data, context={"config_dir": config_dir})
    except ValidationError as exc:
        lines = [f"{source}: invalid configuration for {model.__name__}:"]
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "<root>"
            lines.append(f"  {loc}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from exc
    return cfg


def cache_root() -> Path:
    """Where machine-wide caches live (models, embeddings, the BFCL venv): ``$ASTRA_CACHE_DIR``
    or ``~/.cache/astra-synth``."""
    return Path(os.environ.get("ASTRA_CACHE_DIR") or Path.home() / ".cache" / "astra-synth")


class ContaminationConfig(StrictModel):
    """The ``contamination:`` section of both pipelines' configs, read by the publish step's firewall
    (thresholds: see :mod:`astra_synth.firewall.contamination`). Here, not in the firewall, because the
    producers' configs carry it and the producers sit below the firewall."""

    enabled: bool = Field(default=True, description="Check the export against the benchmarks.")
    bfcl: bool = Field(default=True, description="Compare against BFCL-v3 multi-turn (pinned bfcl-eval).")
    benchmarks: list[Path] = Field(
        default_factory=list, description="τ²-bench tasks, ACEBench or tool-doc files to compare against too."
    )
    embedder: Literal["auto", "local", "none"] = Field(
        default="auto",
        description="Text embeddings: local MiniLM; auto = local when sentence-transformers is installed.",
    )
    ngram: int = Field(default=8, ge=3, description="Word n-gram length of the text overlap.")
    ngram_containment: float = Field(default=0.5, gt=0, le=1)
    embedding_cosine: float = Field(default=0.9, gt=0, le=1)
    call_sequence: int = Field(default=3, ge=2, description="Consecutive identical golden calls that match.")
    tool_overlap_matches: int = Field(
        default=3, ge=1, description="Tools shared with one source by name or generic signature."
    )
    schema_min_properties: int = Field(
        default=3, ge=1, description="Smallest schema matched without its name."
    )

    @model_validator(mode="after")
    def _resolve_paths(self, info: ValidationInfo) -> ContaminationConfig:
        base = (info.context or {}).get("config_dir")
        if base:
            self.benchmarks = [p if p.is_absolute() else Path(base) / p for p in self.benchmarks]
        return self

    def thresholds(self) -> dict[str, float]:
        return {
            "ngram": self.ngram,
            "ngram_containment": self.ngram_containment,
            "embedding_cosine": self.embedding_cosine,
            "call_sequence": self.call_sequence,
            "tool_overlap_matches": self.tool_overlap_matches,
            "schema_min_properties": self.schema_min_properties,
        }
