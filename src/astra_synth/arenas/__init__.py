"""Pipeline B: verifiable RL arenas (records, runtime, validation battery, synthesis stages)."""
