"""Traces in local mode: OTLP/HTTP spans decoded, stored with a size limit, and linked from a run."""
