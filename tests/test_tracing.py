"""One trace from the start request to every optimizer step, from real exporters."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from federation_runs import run_training
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.federation


def test_a_training_is_one_trace_down_to_every_step(start_federation):
    examples, batch = 300, 32
    with OtlpReceiver() as receiver:
        otel_env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }
        federation = start_federation(2, extra_env=otel_env)
        # The caller's span (the backend's request span in production).
        provider = TracerProvider(resource=Resource.create({"service.name": "test-caller"}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=receiver.endpoint + "/v1/traces")))
        tracer = provider.get_tracer("test")
        with tracer.start_as_current_span("POST /training/start") as request_span:
            ctx = request_span.get_span_context()
            traceparent = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"
        outcome = run_training(
            federation,
            {
                "num-server-rounds": 2,
                "min-nodes": 2,
                "fraction-train": 1.0,
                "max-train-examples": examples,
                "batch-size": batch,
                "traceparent": traceparent,
            },
        )
        provider.shutdown()
        assert outcome.flower_status == "finished:completed"
        spans = list(receiver.spans)

    trace_id = f"{ctx.trace_id:032x}"
    assert {s.trace_id for s in spans} == {trace_id}, "every span belongs to the run's one trace"
    assert outcome.of("run_started")[0]["trace_id"] == trace_id
    by_id = {s.span_id: s for s in spans}
    orphans = [s.name for s in spans if s.parent_span_id and s.parent_span_id not in by_id]
    assert not orphans, f"spans whose parent never arrived: {orphans}"

    (run_span,) = [s for s in spans if s.name == "fl.run"]
    assert run_span.parent_span_id == f"{ctx.span_id:016x}"
    assert run_span.service == "flowerbed-serverapp"
    rounds = [s for s in spans if s.name == "fl.round"]
    assert sorted(s.attributes["fl.round"] for s in rounds) == [1, 2]
    assert all(s.parent_span_id == run_span.span_id for s in rounds)
    for name in ("aggregate", "evaluate.centralized", "checkpoint.save"):
        assert Counter(by_id[s.parent_span_id].name for s in spans if s.name == name)["fl.round"] == 2, name

    steps_per_epoch = math.ceil(examples / batch)
    for round_span in rounds:
        trains = [s for s in spans if s.name == "fl.client.train" and s.parent_span_id == round_span.span_id]
        participants = next(e for e in outcome.of("round_finished") if e["round"] == round_span.attributes["fl.round"])
        assert len(trains) == len(participants["clients"]) == 2
        assert {t.attributes["fl.node_id"] for t in trains} == {str(c["node_id"]) for c in participants["clients"]}
        for t in trains:
            assert t.service == "flowerbed-clientapp"
            epochs = [s for s in spans if s.name == "train.epoch" and s.parent_span_id == t.span_id]
            assert len(epochs) >= 1
            for epoch in epochs:
                steps = [s for s in spans if s.name == "train.step" and s.parent_span_id == epoch.span_id]
                assert len(steps) == steps_per_epoch
                assert all(isinstance(s.attributes["loss"], float) for s in steps)
