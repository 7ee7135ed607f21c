"""The ML task: the networks, the data each node trains on (partitions or its own directory) and local training."""
