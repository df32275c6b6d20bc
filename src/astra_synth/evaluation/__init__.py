"""Evaluation: the shared tool-calling agent loop, held-out arenas, BFCL-v3 multi-turn."""
