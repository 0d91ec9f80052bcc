"""Per-process state the app reads: the loaded models, the shared worker boards, the metrics."""
