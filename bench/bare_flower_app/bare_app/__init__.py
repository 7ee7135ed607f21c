"""A minimal Flower App as in Flower's quickstart, used only as a benchmark baseline."""
