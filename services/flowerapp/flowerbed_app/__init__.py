"""Flowerbed's Flower App: ServerApp, ClientApp and the ML task they share."""
