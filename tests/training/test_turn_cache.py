"""Cached multi-turn generation writes exactly the tokens a plain ``generate`` over whole conversations
writes (greedy, real model and tokenizer): shared prompts, rows that stop, tool blocks of other lengths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from astra_synth.training.models import load_tokenizer
from astra_synth.training.prefix_groups import shared_prefixes
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
            assert cache.conversation(row) == seen + turn
        answers = dict(zip(keys, got, strict=True))
        keys = sorted(results)
        for key in keys:
            talk[key] = talk[key] + answers[key] + block(results[key])


def test_prompts_of_one_family_read_their_common_prefix_once(embedded_model: Path) -> None:
    """Arenas of one family share their system prompt and tool schemas: the generator groups them, and
    reading the prefix once (then each rest after it, padding in between) writes the plain tokens."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(str(embedded_model))
    model = AutoModelForCausalLM.from_pretrained(str(embedded_model), dtype=torch.float32).eval()
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    system = "You answer with the tools below. " + " ".join(
        f"Tool t{i} returns the value of item {i}." for i in range(20)
    )

    def prompt(question: str, family: str = system) -> list[int]:
        text = tokenizer.apply_chat_template(
            [{"role": "system", "content": family}, {"role": "user", "content": question}],
            tokenize=False,
            add_generation_prompt=True,
        )
        ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    prompts = [
        prompt("What does t3 return for item 3?"),
        prompt("Call t7."),
        prompt("Call t7."),  # identical: one row until decoding
        prompt("Which tool gives item 12, and what is it? Say it in one short sentence please."),
        prompt("Name a colour.", family="Be brief."),  # another family: a group of its own
    ]
    groups = shared_prefixes([tuple(p) for p in dict.fromkeys(tuple(p) for p in prompts)])
    assert len(groups) == 2
    family = next(members for _, members in groups if len(members) == 3)
    length = next(length for length, members in groups if members == family)
    assert length > len(tokenizer(system)["input_ids"])  # the whole system prompt is read once

    cache = TurnCache(tokenizer.pad_token_id, {eos})
    got = cache.generate(model, list(range(len(prompts))), prompts, 10, {"do_sample": False})
    assert got == _plain(model, tokenizer, prompts, 10)
    for row, (seen, turn) in enumerate(zip(prompts, got, strict=True)):
        assert cache.conversation(row) == seen + turn


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
