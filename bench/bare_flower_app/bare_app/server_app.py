"""Quickstart-style ServerApp: Flower's FedAvg with its defaults.

The only addition is a no-op `evaluate_fn` that prints a timestamp after every
round, so the benchmark can read round boundaries from the log stream.
"""

import time

from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from bare_app.task import model

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    def mark(server_round: int, arrays: ArrayRecord) -> None:
        print(f"BARE_ROUND {server_round} {time.time():.3f}", flush=True)

    FedAvg().start(
        grid=grid,
        initial_arrays=ArrayRecord(model().state_dict()),
        num_rounds=int(context.run_config["num-server-rounds"]),
        evaluate_fn=mark,
    )
