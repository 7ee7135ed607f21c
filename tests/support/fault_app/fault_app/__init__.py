"""A Flower App whose ClientApp fails on request (executor tests)."""
