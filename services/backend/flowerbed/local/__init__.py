"""Local mode: the federation's real Flower processes on this machine, started, leashed and stopped by process group."""
