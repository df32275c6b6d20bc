"""The embedded policy: converted once, trainable, with a chat template that renders and parses tool calls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from astra_synth.config import EndpointConfig
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


@pytest.mark.slow
@pytest.mark.timeout(300)  # the llama.cpp server and the converted model, 8 tokens each
def test_conversion_decodes_like_llama_cpp(embedded_model: Path, embedded_endpoint: EndpointConfig) -> None:
    """The fp32 checkpoint is the GGUF's model: greedy decoding gives llama.cpp's 8 tokens at temperature 0,
    each with nearly its log-probability (llama.cpp multiplies the 4-bit blocks with 8-bit activations, so
    not exactly). A wrong rope, norm, tie or Q/K permutation would change both."""
    import httpx
    import torch
    from transformers import AutoModelForCausalLM

    prompt = "<|im_start|>user\nName the three primary colours.<|im_end|>\n<|im_start|>assistant\n"
    reply = httpx.post(
        f"{embedded_endpoint.base_url}/completions",
        json={"prompt": prompt, "max_tokens": 8, "temperature": 0, "repeat_penalty": 1.0, "logprobs": 1},
        timeout=120,
    ).json()
    expected = reply["choices"][0]["logprobs"]
    tokenizer = load_tokenizer(str(embedded_model))
    model = AutoModelForCausalLM.from_pretrained(embedded_model, dtype=torch.float32)
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    out = model.generate(
        torch.tensor([ids]),
        max_new_tokens=8,
        do_sample=False,
        output_scores=True,
        return_dict_in_generate=True,
    )
    new = out.sequences[0, len(ids) :].tolist()
    assert [tokenizer.decode([t]) for t in new] == expected["tokens"]
    logprobs = [torch.log_softmax(s[0], -1)[t].item() for s, t in zip(out.scores, new, strict=True)]
    assert logprobs == pytest.approx(expected["token_logprobs"], abs=0.2)


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
