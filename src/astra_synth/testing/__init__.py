"""A documented test kit: a scripted OpenAI-compatible server (fault injection, scripted answers)."""
