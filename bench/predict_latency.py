"""Prediction latency: POST /models/{id}/predict for a SimpleCNN under 50 concurrent connections.

A real `flowerbed serve` process with one `cnn` checkpoint in its model store (written by the
ServerApp's own writer; the weights' values do not change the cost), wrk (Debian's) posting one
28×28 Fashion-MNIST PNG from a second process. In the same run, the floors to compare against:
GET /health (no work) and GET /models/{id} (a read of the same checkpoint's metadata).

    .venv/bin/python bench/predict_latency.py [--seconds 10] [--connections 50] [--json]
"""

from __future__ import annotations

import argparse
import io
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

import httpx
from _harness import backend, emit
from api_latency import wrk

from flowerbed_app.runtime import checkpoints
from flowerbed_app.task.fashion_mnist import DEFAULT_DIR, load_split
from flowerbed_app.task.networks import create_model

TOKEN = secrets.token_hex(16)


def png() -> bytes:
    from PIL import Image

    images, _ = load_split(DEFAULT_DIR, "test")
    buffer = io.BytesIO()
    Image.fromarray(images[0], mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def lua_script(directory: Path, body: bytes) -> Path:
    """wrk's request: the PNG as the body, byte by byte in Lua's decimal escapes."""
    escaped = "".join(f"\\{b}" for b in body)
    script = directory / "predict.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = "{escaped}"\n'
        'wrk.headers["Content-Type"] = "image/png"\n'
        f'wrk.headers["Authorization"] = "Bearer {TOKEN}"\n'
    )
    return script


def main() -> None:
    parser = argparse.ArgumentParser(description="Prediction latency")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: `apt-get install wrk` (make setup installs it as root)")

    with tempfile.TemporaryDirectory(prefix="flowerbed-predict-bench-") as tmp:
        data_dir = Path(tmp)
        meta = checkpoints.save_checkpoint(data_dir / "models", "bench", 1, create_model("cnn").state_dict(), {"model": "cnn"})
        script = lua_script(data_dir, png())
        with backend(data_dir, TOKEN) as base:
            predict = f"{base}/models/{meta['model_id']}/predict"
            headers = {"Content-Type": "image/png", "Authorization": f"Bearer {TOKEN}"}
            warm = httpx.post(predict, content=png(), headers=headers, timeout=60)  # loads the model: not measured
            assert warm.status_code == 200, warm.text  # also loads the model: wrk measures the steady state
            c = args.connections
            results = {
                f"health_c{c}": wrk(f"{base}/health", c, args.seconds),
                f"model_info_c{c}": wrk(f"{base}/models/{meta['model_id']}", c, args.seconds),
                f"predict_c{c}": wrk(predict, c, args.seconds, script=script),
            }

    table = [[name, f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{r['rps']:.0f}", r["non_2xx"]] for name, r in results.items()]
    floor = results[f"health_c{args.connections}"]
    emit(
        table,
        ["endpoint @ connections", "p50 ms", "p99 ms", "req/s", "non-2xx"],
        {
            "results": results,
            "predict_p99_over_health_p99": results[f"predict_c{args.connections}"]["p99_ms"] / max(floor["p99_ms"], 1e-3),
        },
        args.json,
    )


if __name__ == "__main__":
    main()
