"""The embedded policy: converted once, trainable, with a chat template that renders and parses tool calls."""

from __future__ import annotations

import json
from pathlib import Path

from astra_synth.training.models import (
    EMBEDDED,
    LoraConfig,
    embedded_checkpoint,
    load_tokenizer,
    lora_config,
    resolve_model,
    tool_chat_template,
)

TOOL = {
    "type": "function",
    "function": {
        "name": "capital_of",
        "description": "The capital city of a country.",
        "parameters": {
            "type": "object",
            "properties": {"country": {"type": "string", "description": "Country name."}},
            "required": ["country"],
        },
    },
}


def test_conversion_is_cached_and_resolves(embedded_model: Path) -> None:
    assert embedded_checkpoint() == embedded_model  # second call: the marker is there, nothing converts
    assert resolve_model(EMBEDDED) == str(embedded_model)
    assert resolve_model("org/other-model") == "org/other-model"
    config = json.loads((embedded_model / "config.json").read_text())
    assert "quantization_config" not in config
    assert (embedded_model / "model.safetensors").stat().st_size > 400_000_000  # de-quantized fp32


def test_template_renders_tools_and_parses_a_tool_call(embedded_model: Path) -> None:
    tokenizer = load_tokenizer(str(embedded_model))
    assert tokenizer.chat_template == tool_chat_template()
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Capital of Japan?"}],
        tools=[TOOL],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert '"name": "capital_of"' in prompt and prompt.endswith("<|im_start|>assistant\n")
    from trl.chat_template_utils import add_response_schema, parse_response

    tokenizer = add_response_schema(tokenizer)
    text = '<tool_call>\n{"name": "capital_of", "arguments": {"country": "Japan"}}\n</tool_call><|im_end|>'
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    message = parse_response(tokenizer, ids, prefix=[], tools=[TOOL])
    call = message["tool_calls"][0]["function"]
    assert call["name"] == "capital_of" and call["arguments"] == {"country": "Japan"}


def test_lora_is_optional() -> None:
    assert lora_config(None) is None
    config = lora_config(LoraConfig(r=4))
    assert config.r == 4 and config.task_type == "CAUSAL_LM"
