"""Experiments that run the whole stack end to end and measure it (above training and evaluation)."""
