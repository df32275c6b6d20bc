"""Isolated, fast execution of LLM-written tool code."""
