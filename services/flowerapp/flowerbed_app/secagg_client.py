"""ClientApp side of SecAgg+: Flower's `secaggplus_mod` around our unchanged train handler.

Flower 1.41's SecAgg+ speaks the legacy message format (`fitins.*` in, `fitres.*` out).
In three of its four stages the mod answers by itself (keys, shares); in the masked-vector
stage it calls our train handler and masks what comes back before anything leaves the
node. `as_train_message` and `as_fitres` translate between the two formats, so training,
evaluation of the received model, DP and the client record are the same code as in a
plain run; the metrics ride in `fitres.metrics`, in the clear (who took part, examples,
timings, local metrics) — only the model is masked.
"""

from __future__ import annotations

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict

from flowerbed_app import reply_contract as contract

SECAGG_RECORD = "secaggplus_configs"  # flwr.common.secure_aggregation.secaggplus_constants.RECORD_KEY_CONFIGS
FITINS_ARRAYS, FITINS_CONFIG = "fitins.parameters", "fitins.config"


def secaggplus_when_asked(msg: Message, context: Context, call_next: object) -> Message:
    """Flower's secaggplus_mod for SecAgg+ messages only: the mod fails on any train message
    without its record, and a plain run's messages must pass untouched (and skip importing
    the cryptography library)."""
    if SECAGG_RECORD in msg.content.config_records:
        from flwr.client.mod import secaggplus_mod

        return secaggplus_mod(msg, context, call_next)  # type: ignore[arg-type]
    return call_next(msg, context)  # type: ignore[operator]


def is_legacy_fit(msg: Message) -> bool:
    return FITINS_ARRAYS in msg.content.array_records


def as_train_message(msg: Message, names: list[str]) -> Message:
    """The masked stage's legacy fit message in our train format (in place: its metadata —
    the round's deadline — stays). `names` are the model's state-dict keys, which the
    legacy format drops."""
    arrays = list(msg.content.array_records[FITINS_ARRAYS].values())
    if len(arrays) != len(names):
        raise ValueError(f"SecAgg+ fit message holds {len(arrays)} arrays, the model has {len(names)}")
    config = ConfigRecord(dict(msg.content.config_records[FITINS_CONFIG]))
    msg.content = RecordDict(
        {contract.ARRAYS: ArrayRecord({n: Array(a.numpy()) for n, a in zip(names, arrays, strict=True)}), "config": config}
    )
    return msg


def as_fitres(reply: Message, msg: Message) -> Message:
    """Our train reply as the legacy FitRes the mod masks: parameters in state-dict order,
    metrics and the client record (scalars) as its metrics."""
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
    from flwr.compat.common import recorddict_compat as compat

    content = reply.content
    metrics = {**content[contract.CLIENT], **content[contract.METRICS]}
    fitres = FitRes(
        status=Status(code=Code.OK, message=""),
        parameters=ndarrays_to_parameters([a.numpy() for a in content[contract.ARRAYS].values()]),
        num_examples=int(metrics[contract.WEIGHT]),
        metrics=metrics,  # type: ignore[arg-type]
    )
    return Message(content=compat.fitres_to_recorddict(fitres, keep_input=False), reply_to=msg)
