"""Flowerbed's Flower App: ServerApp, ClientApp and the ML task they share."""

__version__ = "0.1.0"
