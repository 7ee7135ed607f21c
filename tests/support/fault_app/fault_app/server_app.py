"""One message per node per round; per round, a JSON line of who replied and how."""

from __future__ import annotations

import json
import time

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from flowerbed_app.strategy.fast_grid import FastPollGrid

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    faults = dict(pair.split(":") for pair in str(config["faults"]).split(",") if pair)
    fast = FastPollGrid(grid, poll_seconds=0.05)
    with open(str(config["result-file"]), "a") as out:
        for server_round in range(1, int(config["num-server-rounds"]) + 1):
            nodes = fast.get_node_ids()
            fault = faults.get(str(server_round), "")
            messages = [
                Message(RecordDict({"config": ConfigRecord({"fault": fault if node == nodes[0] else ""})}), node, "train")
                for node in nodes
            ]
            started = time.time()
            replies = fast.send_and_receive(messages, timeout=float(config["round-timeout"]))
            seconds = round(time.time() - started, 2)
            record = {"round": server_round, "started_at": started, "seconds": seconds, "faulty_node": nodes[0], "replies": {}}
            for reply in replies:
                node = fast.destinations.get(reply.metadata.reply_to_message_id, reply.metadata.src_node_id)
                if reply.has_error():
                    record["replies"][str(node)] = {"error": reply.error.reason}
                else:
                    record["replies"][str(node)] = dict(reply.content["process"])
            out.write(json.dumps(record) + "\n")
            out.flush()
