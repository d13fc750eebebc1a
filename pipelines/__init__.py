"""Engine-specific pipelines around the journeys core: the Flink stream job (and, later, batch)."""
