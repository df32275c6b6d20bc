"""Multi-turn generation that keeps the KV cache between turns and shares identical prompts (CPU speed).

Without it every turn re-reads the whole conversation: on 2 CPU cores, prefilling 16 rows of a 600-token
tool prompt costs ~16 s per turn, three turns per episode, and a GRPO group re-reads the same prompt eight
times. Here a batch of episodes keeps one ``DynamicCache``: the first turn prefills each distinct prompt once
and copies its cache rows to every episode that shares it (a GRPO group), and each later turn feeds only what
is new — the tool results the environment appended. Rows stay aligned as one tensor: a row's tokens after its
end of turn, and the left padding of a shorter tool block, stay in the cache under attention mask 0, and
``generate`` derives positions from the mask, so every row sees exactly its own conversation. The tokens
equal the uncached loop's (a test compares them greedily on the real model).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class TurnCache:
    """One batch of episodes' generation state across turns; a new instance per ``EpisodeRunner.play``."""

    def __init__(self, pad_token_id: int, eos_ids: set[int]) -> None:
        self.pad = pad_token_id
        self.eos = eos_ids
        self.keys: list[int] = []  # the episode each tensor row belongs to
        self.ids: Any = None  # (rows, width) every token the rows have seen, padding included
        self.mask: Any = None  # 1 where a token is part of the row's conversation
        self.seen: list[int] = []  # conversation tokens (mask 1) per row
        self.cache: Any = None

    def generate(
        self,
        model: Any,
        keys: Sequence[int],
        sequences: Sequence[list[int]],
        max_new_tokens: int,
        sampling: dict[str, Any],
    ) -> list[list[int]]:
        """The next turn of each row (``keys`` name the episodes, ``sequences`` their whole conversations so
        far); tokens after a row's end of turn are returned and then hidden from its later turns."""
        import torch

        device = next(model.parameters()).device
        if self.cache is None:
            self._prefill(model, keys, sequences, device)
        else:
            self._extend(keys, sequences, device)
        with torch.no_grad():
            out = model.generate(
                input_ids=self.ids,
                attention_mask=self.mask,
                cache=self.cache,
                max_new_tokens=max_new_tokens,
                pad_token_id=self.pad,
                eos_token_id=sorted(self.eos),
                return_dict_in_generate=True,
                **sampling,
            )
        width = self.ids.shape[1]
        self.cache = out.cache
        self.ids = out.sequences
        new = out.sequences[:, width:].tolist()
        turns = []
        for row, tokens in enumerate(new):
            end = next((i for i, t in enumerate(tokens) if t in self.eos), None)
            turn = tokens[: end + 1] if end is not None else tokens
            turns.append(turn)
            self.seen[row] += len(turn)
        block = torch.zeros((len(new), out.sequences.shape[1] - width), dtype=self.mask.dtype, device=device)
        for row, turn in enumerate(turns):
            block[row, : len(turn)] = 1
        self.mask = torch.cat([self.mask, block], dim=1)
        return turns

    def _prefill(self, model: Any, keys: Sequence[int], sequences: Sequence[list[int]], device: Any) -> None:
        """Cache each distinct prompt once (all but its last token), then give each row its prompt's cache."""
        import torch
        from transformers import DynamicCache

        distinct: dict[tuple[int, ...], int] = {}
        rows = [distinct.setdefault(tuple(s), len(distinct)) for s in sequences]
        prompts = list(distinct)
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[self.pad] * (width - len(p)) + list(p) for p in prompts], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        cache = DynamicCache()
        if width > 1:
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.no_grad():
                model(
                    input_ids=ids[:, :-1],
                    attention_mask=mask[:, :-1],
                    position_ids=positions[:, :-1],
                    cache=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
        index = torch.tensor(rows, device=device)
        if len(prompts) != len(rows):  # distinct prompts are already one row each, in order
            cache.batch_select_indices(index)
        self.keys = list(keys)
        self.ids, self.mask = ids[index], mask[index]
        self.seen = [len(s) for s in sequences]
        self.cache = cache

    def _extend(self, keys: Sequence[int], sequences: Sequence[list[int]], device: Any) -> None:
        """Keep the rows still playing and append what each conversation gained since its last turn."""
        import torch

        index = [self.keys.index(k) for k in keys]
        if index != list(range(len(self.keys))):
            select = torch.tensor(index, device=device)
            self.cache.batch_select_indices(select)
            self.ids, self.mask = self.ids[select], self.mask[select]
            self.seen = [self.seen[i] for i in index]
            self.keys = list(keys)
        added = []
        for row, sequence in enumerate(sequences):
            if len(sequence) < self.seen[row]:
                raise ValueError(f"episode {keys[row]}: its conversation is shorter than what was generated")
            added.append(sequence[self.seen[row] :])
            self.seen[row] = len(sequence)
        width = max(len(a) for a in added)
        ids = torch.tensor([[self.pad] * (width - len(a)) + a for a in added], device=device)
        mask = torch.tensor([[0] * (width - len(a)) + [1] * len(a) for a in added], device=device)
        self.ids = torch.cat([self.ids, ids.to(self.ids.dtype)], dim=1)
        self.mask = torch.cat([self.mask, mask.to(self.mask.dtype)], dim=1)
