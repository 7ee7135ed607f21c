"""`flowerbed train`'s side of the REST API: the request from the flags, checks, start, progress, result.

A client of the API like the dashboard (runs start through the backend's one code path).
With `--json`, stdout carries only the final JSON object and people read stderr; `info`
and `fail` keep to that for every command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from flowerbed import api_client


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per run setting of the API (`--learning-rate`, `--strategy` …), from the app's declarations.

    `--rounds` stays as the older spelling of `--num-rounds`. Values are checked by the
    declarations themselves (precheck), so a bad one gets the same message as from the API.
    """
    from flowerbed_app.run_settings import SETTINGS

    for item in SETTINGS:
        if not item.spec.api:
            continue
        flags = [item.flag, "--rounds"] if item.name == "num_rounds" else [item.flag]
        kind = item.kind if item.kind in (int, float) else str
        choices = f" ({' | '.join(item.spec.choices)})" if item.spec.choices else ""
        parser.add_argument(
            *flags, dest=item.name, type=kind, default=None, help=f"{item.spec.description}{choices} Default: {item.default!r}."
        )


def training_request(args: argparse.Namespace) -> dict[str, Any]:
    """The POST /training/start body for the flags (`--set` takes run-config keys or API names)."""
    from flowerbed_app.run_settings import BY_KEY, RunSettings

    defaults = RunSettings()
    body: dict[str, Any] = {"num_rounds": defaults.num_rounds, "model": defaults.model}
    body.update({name: value for name, value in vars(args).items() if name in _api_names() and value is not None})
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        body[BY_KEY[key].name if key in BY_KEY else key.replace("-", "_")] = _parse_scalar(value)
    return body


def _api_names() -> set[str]:
    from flowerbed_app.run_settings import SETTINGS

    return {item.name for item in SETTINGS if item.spec.api}


def _parse_scalar(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def precheck(args: argparse.Namespace, body: dict[str, Any]) -> str | None:
    """Reject bad input before starting anything (a federation takes a minute to start).

    The same rules the backend applies: the app's RunSettings (its messages name the
    run-config key users typed with --set) and the API's TrainingConfig.
    """
    from pydantic import ValidationError

    from flowerbed.runs.run_config import TrainingConfig
    from flowerbed_app.run_settings import SETTINGS, RunSettings, SettingsError
    from flowerbed_app.task.fashion_mnist import DatasetMissingError, check_source

    keys = {item.name: item.key for item in SETTINGS}
    run_config = {keys.get(k, k.replace("_", "-")): v for k, v in body.items() if k != "from_checkpoint"}
    try:
        if args.nodes < 1:
            raise SettingsError("nodes", "must be at least 1")
        settings = RunSettings.from_run_config(run_config)
        if settings.min_available_nodes > args.nodes and not args.allow_waiting:
            raise SettingsError(
                "min-available-nodes", f"{settings.min_available_nodes} nodes required but --nodes is {args.nodes}"
            )
        check_source(settings.dataset)
    except (SettingsError, DatasetMissingError) as exc:
        return str(exc)
    try:
        TrainingConfig.model_validate(body)
    except ValidationError as exc:
        return _describe_422({"detail": exc.errors()})
    return None


def train(url: str, token: str, body: dict[str, Any], args: argparse.Namespace) -> int:
    client = api_client.connect(url, token)
    started = time.time()
    response = api_client.start_run(client, body)
    if response.status_code == 422:
        return fail(_describe_422(response.json()), as_json=args.json)
    if response.status_code != 202:
        return fail(f"the backend refused the run ({response.status_code}): {response.text}", as_json=args.json)
    run = response.json()
    run_id = run["run_id"]
    info(f"run {run_id} (Flower run {run['flower_run_id']}): {body['num_rounds']} rounds of {body['model']}", args.json)
    checkpoints: dict[str, str] = {}  # model id → path, in round order; pruned ones leave
    arrived: dict[int, float] = {}  # round → seconds since the run was started
    status = "pending"
    try:
        for event in api_client.follow_events(client, run_id):
            kind, data = event.event, event.data
            if kind == "round_finished":
                arrived[int(data["round"])] = round(time.time() - started, 3)
                _progress(data, body["num_rounds"], args.json)
            elif kind == "checkpoint_saved":
                checkpoints[data["model_id"]] = data["path"]
                for model_id in data.get("pruned") or []:  # deleted by the run's keep-checkpoints policy
                    checkpoints.pop(model_id, None)
            elif kind == "waiting_for_nodes":
                info(f"waiting for nodes ({data['connected']}/{data['needed']})", args.json)
            elif kind == "status":
                status = data["status"]
    except KeyboardInterrupt:
        api_client.stop_run(client, run_id)
        info("interrupted: asked the backend to stop the run", args.json)
        raise
    detail = api_client.run_detail(client, run_id)
    status = detail["status"]
    result = {
        "run_id": run_id,
        "flower_run_id": detail["flower_run_id"],
        "status": status,
        "accuracy": detail["accuracy"],
        "accuracy_kind": detail.get("accuracy_kind", "centralized"),
        "loss": detail["loss"],
        "rounds": [
            {
                "round": r["round"],
                "accuracy": r["accuracy"],
                "loss": r["loss"],
                "seconds": r["seconds"],
                "elapsed": arrived.get(r["round"]),
                "clients": r["clients"],
                "failures": r["failures"],
                "timeline": r["timeline"],
            }
            for r in detail["rounds"]
        ],
        "checkpoints": list(checkpoints.values()),
        "seconds": round(time.time() - started, 3),
        "error": detail["error"],
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{status}: final accuracy {result['accuracy']} in {result['seconds']:.1f}s")
        for path in checkpoints.values():
            print(f"  checkpoint {path}")
        if result["error"]:
            print(f"  reason: {result['error']}", file=sys.stderr)
    return 0 if status == "completed" else 1


def _describe_422(body: dict[str, Any]) -> str:
    errors = body.get("detail")
    if not isinstance(errors, list):
        return str(errors)
    parts = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", []) if p != "body"]
        parts.append(f"{'.'.join(loc) or 'request'}: {error.get('msg')}")
    return "; ".join(parts)


def _progress(event: dict[str, Any], total: int, as_json: bool) -> None:
    width = 20
    done = min(event["round"], total)
    bar = "█" * (width * done // total) + "·" * (width - width * done // total)
    failures = f", {len(event['failures'])} failed" if event["failures"] else ""
    info(
        f"round {event['round']:>3}/{total} {bar} accuracy {event['accuracy']:.4f} "
        f"loss {event['loss']:.4f} ({event['seconds']:.1f}s, {len(event['clients'])} clients{failures})",
        as_json,
    )


def info(message: str, as_json: bool) -> None:
    # With --json, stdout carries only the final JSON object; humans read stderr.
    print(message, file=sys.stderr if as_json else sys.stdout, flush=True)


def fail(message: str, as_json: bool = False) -> int:
    if as_json:
        print(json.dumps({"status": "error", "error": message}))
    print(f"error: {message}", file=sys.stderr)
    return 2
