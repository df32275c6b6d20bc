"""The episode core: typed chat records, the one tool-call parser, the one agent loop."""
