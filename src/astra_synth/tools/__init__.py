"""Tool documents and tool servers: registry records, live MCP access, emulation, cassettes."""
