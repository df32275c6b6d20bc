"""Chain sampling cost: seeded weighted random walks vs the authors' exhaustive enumeration, same graphs.

    .venv/bin/python benchmarks/chain_walks.py [--tools 8 12 16] [--walks 8]

The authors enumerated every walk of length 2..5 from every node (cycles allowed, no cap), so the number of
chains grows like n·d^4 on a graph with out-degree d, and every chain then costs verification calls (here 6:
data flow, a 3-sample vote, a 2-call back-translation). Sampling keeps a fixed number per server. Both run
on the same random graphs; compare ratios, not absolute times (machines are noisy).
"""

from __future__ import annotations

import argparse
import random
import time

import networkx as nx

from astra_synth.trajectories.graph import build_graph, sample_walks

CALLS_PER_CHAIN = 6


def exhaustive(graph: nx.DiGraph[str], min_len: int, max_len: int) -> int:
    """How many walks the authors' DFS yields (every walk of exactly L nodes, revisits allowed)."""
    count = 0
    stack = [[n] for n in graph.nodes]
    while stack:
        walk = stack.pop()
        if len(walk) >= min_len:
            count += 1
        if len(walk) < max_len:
            stack.extend([*walk, nxt] for nxt in graph.successors(walk[-1]))
    return count


def random_graph(n: int, rng: random.Random) -> nx.DiGraph[str]:
    tools = [f"t{i}" for i in range(n)]
    chains = [rng.sample(tools, rng.randint(2, 5)) for _ in range(n * 3)]
    return build_graph(tools, chains)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tools", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--walks", type=int, default=8)
    args = parser.parse_args()
    rng = random.Random(0)
    print("tools edges  enumerated   enum s  sampled  sample s  LLM calls (enumerated / sampled)")
    for n in args.tools:
        graph = random_graph(n, rng)
        started = time.perf_counter()
        total = exhaustive(graph, 2, 5)
        enum_s = time.perf_counter() - started
        started = time.perf_counter()
        walks = sample_walks(
            graph, random.Random(1), min_len=2, max_len=5, acyclic=True, max_walks=args.walks
        )
        sample_s = time.perf_counter() - started
        print(
            f"{n:>5} {graph.number_of_edges():>5} {total:>11} {enum_s:>8.3f} {len(walks):>8} "
            f"{sample_s:>9.5f}  {total * CALLS_PER_CHAIN} / {len(walks) * CALLS_PER_CHAIN}"
        )


if __name__ == "__main__":
    main()
