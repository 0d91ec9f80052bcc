"""What the tests and the benchmarks share: real gunicorn servers, client load, the workload, fidelity arithmetic."""
