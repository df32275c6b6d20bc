"""LLM layer: OpenAI-compatible client, structured output, response cache, usage ledger, embedded server."""
