"""Replies with its process ids, or fails the way the message asks."""

from __future__ import annotations

import os
import time

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    fault = str(msg.content["config"].get("fault", ""))
    if fault == "raise":
        raise RuntimeError("injected failure")
    if fault == "abort":
        os.abort()
    if fault == "hang":
        time.sleep(3600)
    reply = ConfigRecord({"pid": os.getpid(), "ppid": os.getppid(), "handled_at": time.time()})
    return Message(RecordDict({"process": reply}), reply_to=msg)
