"""Flowerbed: everything around a Flower federation that open-source Flower lacks."""

__version__ = "0.1.0"
