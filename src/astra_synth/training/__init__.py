"""Training: F1 trajectory reward, batch filling, SFT and GRPO (distractors: arenas/distractors.py)."""
