"""Training: F1 trajectory reward, distractor sampling, batch filling, SFT and GRPO."""
