"""The torch side: find, load, quantize and run a model; no Flask, no gunicorn."""
