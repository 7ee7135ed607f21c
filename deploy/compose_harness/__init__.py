"""Boots Flowerbed's compose stack on a Docker engine that can reach no image registry.

Used by `make compose-up` / `make compose-down` and by the compose tests, so both boot the stack
the same way: start the engine if needed (`engine`), build stand-in third-party bases from Debian
packages (`standins`), then build our images and run `docker compose up --wait` on the unchanged
compose files plus one override (`stack`).
"""
