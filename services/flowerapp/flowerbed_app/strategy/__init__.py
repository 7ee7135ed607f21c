"""The server side of a round: Flower's strategies, our wrapper around them, reply screening, aggregation and client selection."""
