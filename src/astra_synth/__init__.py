"""astra-synth: tool-use trajectories and verifiable RL arenas for LLM agents."""

__version__ = "0.1.0"
