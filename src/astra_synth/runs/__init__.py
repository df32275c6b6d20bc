"""Runs: the stage protocol, the async runner and the run directory that makes every run resumable."""
