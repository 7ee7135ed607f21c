"""Flowerbed's node-side programs: Flower's SuperNode and SuperExec, patched in place.

Installed in the clientapp image (and by `make setup`), not shipped in the FAB: these run
the node, the FAB is what a run brings to it.
"""
