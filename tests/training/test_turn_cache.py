"""Cached multi-turn generation writes exactly the tokens a plain ``generate`` over whole conversations
writes (greedy, real model and tokenizer): shared prompts, rows that stop, tool blocks of other lengths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from astra_synth.training.models import load_tokenizer
from astra_synth.training.turn_cache import TurnCache


def _plain(model: Any, tokenizer: Any, sequences: list[list[int]], new: int) -> list[list[int]]:
    """The reference: left-pad the whole conversations and generate, cut at the first end of turn."""
    import torch

    pad = tokenizer.pad_token_id
    width = max(len(s) for s in sequences)
    ids = torch.tensor([[pad] * (width - len(s)) + s for s in sequences])
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences])
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=new, do_sample=False, pad_token_id=pad
        )
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    rows = []
    for row in out[:, width:].tolist():
        rows.append(row[: row.index(eos) + 1] if eos in row else row)
    return rows


def test_cached_turns_equal_plain_generation(embedded_model: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    tokenizer = load_tokenizer(str(embedded_model))
    model = AutoModelForCausalLM.from_pretrained(str(embedded_model), dtype=torch.float32).eval()
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")

    def prompt(question: str) -> list[int]:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def block(text: str) -> list[int]:
        ids: list[int] = tokenizer(
            f"\n<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False
        )["input_ids"]
        return ids

    # a shared prompt (a GRPO group) and two of other lengths
    talk = {
        0: prompt("Name a colour."),
        1: prompt("Name a colour."),
        2: prompt("What is 2+2? Answer briefly."),
        3: prompt("Write one word."),
    }
    # after each turn some episodes stop; the others get "tool results" of different lengths
    added = [
        {0: "Tool says: red. More context follows here.", 1: "Tool says: red.", 3: "ok"},
        {0: "The tool returned an error: try again with more detail.", 3: "fine"},
        {},
    ]
    cache = TurnCache(tokenizer.pad_token_id, {eos})
    keys = [0, 1, 2, 3]
    for turn, results in enumerate(added):
        live = [talk[k] for k in keys]
        got = cache.generate(model, keys, live, 12, {"do_sample": False})
        assert got == _plain(model, tokenizer, live, 12), f"turn {turn}"
        assert all(got)
        for row, (seen, turn) in enumerate(zip(live, got, strict=True)):  # what each row attends to
            assert cache.ids[row][cache.mask[row].bool()].tolist() == seen + turn
        answers = dict(zip(keys, got, strict=True))
        keys = sorted(results)
        for key in keys:
            talk[key] = talk[key] + answers[key] + block(results[key])


def test_sampling_is_temperature_and_top_p_only() -> None:
    import torch

    from astra_synth.training.turn_cache import _next_tokens

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]] * 4000))
    assert _next_tokens(logits, {"do_sample": False}).tolist() == [0] * 4000
    torch.manual_seed(0)
    drawn = _next_tokens(logits, {"do_sample": True, "temperature": 1.0, "top_p": 0.7}).tolist()
    assert set(drawn) == {0, 1}  # the smallest set whose mass reaches 0.7
    assert abs(drawn.count(0) / 4000 - 0.5 / 0.8) < 0.03
    drawn = _next_tokens(logits, {"do_sample": True, "temperature": 0.5, "top_p": 1.0}).tolist()
    sharpened = torch.softmax(logits[0] / 0.5, -1)  # no implicit top-k: every token can be drawn
    assert set(drawn) == {0, 1, 2, 3}
    assert abs(drawn.count(0) / 4000 - float(sharpened[0])) < 0.03
