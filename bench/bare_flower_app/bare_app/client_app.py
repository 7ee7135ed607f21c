"""Quickstart-style ClientApp: one SGD step to train, one forward pass to evaluate."""

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from bare_app.task import batch, model

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    net = model()
    net.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    x, y = batch(int(context.node_config.get("partition-id", 0)))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    opt.step()
    metrics = MetricRecord({"train_loss": float(loss), "num-examples": len(y)})
    return Message(RecordDict({"arrays": ArrayRecord(net.state_dict()), "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    net = model()
    net.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    x, y = batch(int(context.node_config.get("partition-id", 0)))
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(net(x), y)
    metrics = MetricRecord({"eval_loss": float(loss), "num-examples": len(y)})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)
