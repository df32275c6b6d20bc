"""Multi-turn generation that keeps the KV cache between turns and shares identical prompts (CPU speed).

Without it every turn re-reads the whole conversation: on 2 CPU cores, prefilling 16 rows of a 600-token
tool prompt costs ~16 s per turn, three turns per episode, and a GRPO group re-reads the same prompt eight
times. Here a batch of episodes keeps one KV cache (:mod:`~astra_synth.training.kv_cache`, appended in
place): the first turn prefills each distinct prompt once, and the prefix that prompts share (a GRPO
group's whole prompt, a family's system text and tool schemas) stays one cache row per group that every
member attends to (:mod:`~astra_synth.training.cascade_attention`); each later turn feeds only what is new —
the tool results the environment appended. Within a turn a row that ends leaves the batch (its
cache set aside), so the others decode without it; ``generate`` would carry every finished row until the
longest one ended. Between turns the rows are one tensor again: shorter rows and shorter tool blocks are
left-padded under attention mask 0 and positions come from the mask, so every row sees exactly its own
conversation. Sampling is temperature (and ``top_p``) only, the distribution TRL scores the tokens under.
The tokens equal a plain ``generate`` over the whole conversation (a test compares them greedily on the
real model).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, NamedTuple

from astra_synth.training.prefix_groups import prefix_layout, shared_prefixes

if TYPE_CHECKING:
    from astra_synth.training.cascade_attention import SharedPrefix


class _Ended(NamedTuple):
    """A row set aside when its turn ended: its cache layers, tokens, mask, prefix length and group."""

    layers: list[tuple[Any, Any]]
    ids: Any
    mask: Any
    start: Any
    group: int


class TurnCache:
    """One batch of episodes' generation state across turns; a new instance per ``EpisodeRunner.play``.

    Each row's tokens are its group's shared prefix (kept once per group in :attr:`prefix`, see
    :mod:`.cascade_attention`) followed by its own tokens, which alone are in :attr:`ids` and the cache."""

    def __init__(self, pad_token_id: int, eos_ids: set[int]) -> None:
        self.pad = pad_token_id
        self.eos = eos_ids
        self.keys: list[int] = []  # the episode each tensor row belongs to
        # (rows, width) every token after the prefix the rows have seen, padding included
        self.ids: Any = None
        self.mask: Any = None  # 1 where a token is part of the row's conversation
        self.start: Any = None  # (rows,) tokens in the row's shared prefix: where its own positions start
        self.prefix: SharedPrefix | None = None
        self.seen: list[int] = []  # conversation tokens (mask 1, prefix included) per row
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

    def conversation(self, row: int) -> list[int]:
        """Every token ``row`` attends to: its group's prefix, then its own tokens."""
        prefix = self.prefix.tokens[self.prefix.group_of[row]] if self.prefix is not None else []
        own: list[int] = self.ids[row][self.mask[row].bool()].tolist()
        return prefix + own

    def _forward(self, model: Any, ids: Any, width: int) -> Any:
        """The model over ``ids`` (the last columns of the rows), attending to the rows' first ``width``
        columns and their prefixes; the next-token logits of each row."""
        from astra_synth.training.cascade_attention import cascading

        mask = self.mask[:, :width]
        positions = (self.start[:, None] + mask.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1] :]
        extra = {"shared_prefix": self.prefix} if self.prefix is not None else {}
        with cascading(model) if self.prefix is not None else nullcontext():
            return model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                cache=self.cache,
                use_cache=True,
                logits_to_keep=1,
                **extra,
            ).logits[:, -1, :]

    def _decode(self, model: Any, max_new_tokens: int, sampling: dict[str, Any]) -> list[list[int]]:
        """Sample every row's turn; a row that ends leaves the batch, so the others decode without it.

        ``generate`` would keep a finished row in the batch until the longest one ends: with 32 rows and a
        runaway or two per turn, most of a turn's compute went to rows that had already stopped. Each row's
        cache is set aside when it ends and the rows are aligned again (left padding, mask 0) afterwards."""
        import torch

        feed = self.ids[:, self.cache.get_seq_length() :]  # what the cache has not read, equally wide for all
        alive = list(range(self.ids.shape[0]))
        turns: list[list[int]] = [[] for _ in alive]
        ended: dict[int, _Ended] = {}
        for step in range(max_new_tokens):
            chosen = _next_tokens(self._forward(model, feed, self.ids.shape[1]).float(), sampling)
            self.ids = torch.cat([self.ids, chosen[:, None].to(self.ids.dtype)], dim=1)
            self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
            stop = []
            for i, token in enumerate(chosen.tolist()):
                turns[alive[i]].append(token)
                if token in self.eos or step == max_new_tokens - 1:
                    stop.append(i)
            for i in stop:
                layers = [
                    (layer.keys[i : i + 1].clone(), layer.values[i : i + 1].clone())
                    for layer in self.cache.layers
                ]
                group = self.prefix.group_of[i] if self.prefix is not None else 0
                ended[alive[i]] = _Ended(layers, self.ids[i], self.mask[i], self.start[i], group)
            if len(stop) == len(alive):
                break
            if stop:
                keep = [i for i in range(len(alive)) if i not in stop]
                self._select(keep)
                chosen = chosen[torch.tensor(keep, device=chosen.device)]
                alive = [alive[i] for i in keep]
            feed = chosen[:, None].to(self.ids.dtype)
        self._align([ended[row] for row in range(len(turns))])
        return turns

    def _select(self, rows: list[int]) -> None:
        """Keep only ``rows`` of the batch, in that order."""
        import torch

        index = torch.tensor(rows, device=self.ids.device)
        self.cache.batch_select_indices(index)
        self.ids, self.mask, self.start = self.ids[index], self.mask[index], self.start[index]
        if self.prefix is not None:
            self.prefix = self.prefix.select(rows)

    def _align(self, rows: list[_Ended]) -> None:
        """One batch again from each row's cache, ids and mask, left-padded to the longest (mask 0)."""
        import torch

        from astra_synth.training.kv_cache import GrowingCache

        width = max(row.ids.shape[0] for row in rows)
        cache = GrowingCache()
        for layer in range(len(rows[0].layers)):
            keys, values = [], []
            for row in rows:
                k, v = row.layers[layer]
                pad = width - row.ids.shape[0]
                keys.append(torch.nn.functional.pad(k, (0, 0, pad, 0)))
                values.append(torch.nn.functional.pad(v, (0, 0, pad, 0)))
            cache.update(torch.cat(keys), torch.cat(values), layer)
        self.ids = torch.stack(
            [torch.nn.functional.pad(r.ids, (width - r.ids.shape[0], 0), value=self.pad) for r in rows]
        )
        self.mask = torch.stack([torch.nn.functional.pad(r.mask, (width - r.mask.shape[0], 0)) for r in rows])
        self.start = torch.stack([r.start for r in rows])
        if self.prefix is not None:
            self.prefix = self.prefix.regroup([r.group for r in rows])
        self.cache = cache

    def _prefill(self, model: Any, keys: Sequence[int], sequences: Sequence[list[int]], device: Any) -> None:
        """Cache every prompt but its last token, reading shared prefixes once.

        Identical prompts (a GRPO group) are one row until the end, and prompts with a long common prefix
        (arenas of one family: ~95 % of a prompt is the system prompt and tool schemas) share it: the
        prefixes run as one batch and stay one cache row per group, then each prompt's own rest runs after
        its prefix (:mod:`.cascade_attention`)."""
        import torch

        from astra_synth.training.cascade_attention import SharedPrefix
        from astra_synth.training.kv_cache import GrowingCache

        distinct: dict[tuple[int, ...], int] = {}
        rows = [distinct.setdefault(tuple(s), len(distinct)) for s in sequences]
        prompts = list(distinct)
        layout = prefix_layout(prompts, shared_prefixes(prompts), self.pad)
        ids = torch.tensor(layout.ids, device=device)
        mask = torch.tensor(layout.mask, device=device)
        head = layout.head
        self.prefix = None
        self.start = mask[:, :head].sum(-1)
        with torch.no_grad():
            if head:
                first = torch.tensor(layout.first, device=device)
                prefixes = GrowingCache()
                model(
                    input_ids=ids[first, :head],
                    attention_mask=mask[first, :head],
                    position_ids=(mask[first, :head].cumsum(-1) - 1).clamp(min=0),
                    cache=prefixes,
                    use_cache=True,
                    logits_to_keep=1,
                )
                lengths = self.start[first].tolist()
                layers: list[Any] = list(prefixes.layers)

                def unpadded(tensor: Any) -> list[Any]:  # each group's prefix without its left padding
                    return [tensor[g : g + 1, :, head - n :].contiguous() for g, n in enumerate(lengths)]

                self.prefix = SharedPrefix(
                    [unpadded(lay.keys) for lay in layers],
                    [unpadded(lay.values) for lay in layers],
                    [layout.ids[f][head - n : head] for f, n in zip(layout.first, lengths, strict=True)],
                    layout.group_of,
                )
            self.ids, self.mask, self.cache = ids[:, head:], mask[:, head:], GrowingCache()
            if self.ids.shape[1] > 1:
                self._forward(model, self.ids[:, :-1], self.ids.shape[1] - 1)
        if len(prompts) != len(rows):  # distinct prompts are one row each, in order
            self._select(rows)
        self.keys = list(keys)
        self.seen = [len(s) for s in sequences]

    def _extend(self, keys: Sequence[int], sequences: Sequence[list[int]], device: Any) -> None:
        """Keep the rows still playing and append what each conversation gained since its last turn."""
        import torch

        index = [self.keys.index(k) for k in keys]
        if index != list(range(len(self.keys))):
            self._select(index)
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
    # inverse CDF: one uniform draw per row (multinomial drew an exponential per vocabulary entry: 28 ms a
    # step at 32 rows); u is in (0, 1], so a token of probability 0 is never the first to reach u
    cdf = probs.double().cumsum(-1)
    u = (1.0 - torch.rand(probs.shape[0], 1, dtype=torch.float64, device=probs.device)) * cdf[:, -1:]
    return torch.searchsorted(cdf, u)[:, 0].clamp(max=probs.shape[-1] - 1)
