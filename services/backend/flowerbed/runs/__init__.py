"""Runs: the one path that starts and stops them, the threads that follow them, and what is kept of them."""
