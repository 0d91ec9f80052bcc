"""Benchmarks: server throughput and latency beside the in-process model ceiling, quantization modes, overhead."""
