"""Multi-turn generation that keeps the KV cache between turns and shares identical prompts (CPU speed).

Without it every turn re-reads the whole conversation: on 2 CPU cores, prefilling 16 rows of a 600-token
tool prompt costs ~16 s per turn, three turns per episode, and a GRPO group re-reads the same prompt eight
times. Here a batch of episodes keeps one KV cache (:mod:`~astra_synth.training.kv_cache`, appended in
place): the first turn prefills each distinct prompt once and copies its cache rows to every episode that
shares it (a GRPO group), and each later turn feeds only what
is new — the tool results the environment appended. Within a turn a row that ends leaves the batch (its
cache set aside), so the others decode without it; ``generate`` would carry every finished row until the
longest one ended. Between turns the rows are one tensor again: shorter rows and shorter tool blocks are
left-padded under attention mask 0 and positions come from the mask, so every row sees exactly its own
conversation. Sampling is temperature (and ``top_p``) only, the distribution TRL scores the tokens under.
The tokens equal a plain ``generate`` over the whole conversation (a test compares them greedily on the
real model).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from astra_synth.training.prefix_groups import prefix_layout, shared_prefixes


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
        far): its tokens up to and including its end of turn, or ``max_new_tokens`` of them."""
        import torch

        device = next(model.parameters()).device
        if self.cache is None:
            self._prefill(model, keys, sequences, device)
        else:
            self._extend(keys, sequences, device)
        with torch.no_grad():
            turns = self._decode(model, max_new_tokens, sampling)
        for row, turn in enumerate(turns):
            self.seen[row] += len(turn)
        return turns

    def _decode(self, model: Any, max_new_tokens: int, sampling: dict[str, Any]) -> list[list[int]]:
        """Sample every row's turn; a row that ends leaves the batch, so the others decode without it.

        ``generate`` would keep a finished row in the batch until the longest one ends: with 32 rows and a
        runaway or two per turn, most of a turn's compute went to rows that had already stopped. Each row's
        cache is set aside when it ends and the rows are aligned again (left padding, mask 0) afterwards."""
        import torch

        ids, mask, cache = self.ids, self.mask, self.cache
        feed = ids[:, cache.get_seq_length() :]  # what the cache has not read yet, equally wide for all rows
        alive = list(range(ids.shape[0]))
        turns: list[list[int]] = [[] for _ in alive]
        ended: dict[int, tuple[list[tuple[Any, Any]], Any, Any]] = {}
        for step in range(max_new_tokens):
            positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -feed.shape[1] :]
            logits = model(
                input_ids=feed,
                attention_mask=mask,
                position_ids=positions,
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1, :]
            chosen = _next_tokens(logits.float(), sampling)
            ids = torch.cat([ids, chosen[:, None].to(ids.dtype)], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            stop = []
            for i, token in enumerate(chosen.tolist()):
                turns[alive[i]].append(token)
                if token in self.eos or step == max_new_tokens - 1:
                    stop.append(i)
            for i in stop:
                layers = [
                    (layer.keys[i : i + 1].clone(), layer.values[i : i + 1].clone()) for layer in cache.layers
                ]
                ended[alive[i]] = (layers, ids[i], mask[i])
            if len(stop) == len(alive):
                break
            if stop:
                keep = [i for i in range(len(alive)) if i not in stop]
                index = torch.tensor(keep, device=ids.device)
                cache.batch_select_indices(index)
                ids, mask, chosen = ids[index], mask[index], chosen[index]
                alive = [alive[i] for i in keep]
            feed = chosen[:, None].to(ids.dtype)
        self._align([ended[row] for row in range(len(turns))])
        return turns

    def _align(self, rows: list[tuple[list[tuple[Any, Any]], Any, Any]]) -> None:
        """One batch again from each row's cache, ids and mask, left-padded to the longest (mask 0)."""
        import torch

        from astra_synth.training.kv_cache import GrowingCache

        width = max(row_ids.shape[0] for _, row_ids, _ in rows)
        cache = GrowingCache()
        for layer in range(len(rows[0][0])):
            keys, values = [], []
            for layers, row_ids, _ in rows:
                k, v = layers[layer]
                pad = width - row_ids.shape[0]
                keys.append(torch.nn.functional.pad(k, (0, 0, pad, 0)))
                values.append(torch.nn.functional.pad(v, (0, 0, pad, 0)))
            cache.update(torch.cat(keys), torch.cat(values), layer)
        self.ids = torch.stack(
            [torch.nn.functional.pad(r, (width - r.shape[0], 0), value=self.pad) for _, r, _ in rows]
        )
        self.mask = torch.stack([torch.nn.functional.pad(m, (width - m.shape[0], 0)) for _, _, m in rows])
        self.cache = cache

    def _prefill(self, model: Any, keys: Sequence[int], sequences: Sequence[list[int]], device: Any) -> None:
        """Cache every prompt but its last token, reading shared prefixes once.

        Identical prompts (a GRPO group) are one row until the end, and prompts with a long common prefix
        (arenas of one family: ~95 % of a prompt is the system prompt and tool schemas) read it once: the
        prefixes as one batch, then each prompt's own rest after its prefix's cache rows (padding between
        the two parts is under mask 0, positions come from the mask)."""
        import torch

        from astra_synth.training.kv_cache import GrowingCache

        distinct: dict[tuple[int, ...], int] = {}
        rows = [distinct.setdefault(tuple(s), len(distinct)) for s in sequences]
        prompts = list(distinct)
        layout = prefix_layout(prompts, shared_prefixes(prompts), self.pad)
        ids = torch.tensor(layout.ids, device=device)
        mask = torch.tensor(layout.mask, device=device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        head = layout.head
        cache = GrowingCache()
        with torch.no_grad():
            if head:
                first = torch.tensor(layout.first, device=device)
                model(
                    input_ids=ids[first, :head],
                    attention_mask=mask[first, :head],
                    position_ids=positions[first, :head],
                    cache=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
                if layout.group_of != list(range(len(prompts))):  # one row per group, in group order
                    cache.batch_select_indices(torch.tensor(layout.group_of, device=device))
            if ids.shape[1] - head > 1:
                model(
                    input_ids=ids[:, head:-1],
                    attention_mask=mask[:, :-1],
                    position_ids=positions[:, head:-1],
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


def _next_tokens(logits: Any, sampling: dict[str, Any]) -> Any:
    """Greedy, or a draw at ``temperature`` from the smallest set of tokens whose mass reaches ``top_p``:
    the distribution TRL scores the tokens under (no implicit top-k)."""
    import torch

    if not sampling.get("do_sample"):
        return logits.argmax(-1)
    probs = torch.softmax(logits / float(sampling.get("temperature", 1.0)), dim=-1)
    top_p = float(sampling.get("top_p", 1.0))
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs >= top_p
        probs = probs.scatter(-1, order, sorted_probs.masked_fill(outside, 0.0))
    return torch.multinomial(probs, 1)[:, 0]
