"""What a running app needs around the task: telemetry, progress events, checkpoints, compute slots and deadlines."""
