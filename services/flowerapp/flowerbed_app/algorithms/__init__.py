"""Algorithms around training: differential privacy, update compression and secure aggregation (SecAgg+)."""
