"""Test suite of the embedding server."""
