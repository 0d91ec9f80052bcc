"""WSGI entry point: gunicorn wsgi:app."""

from embedding_app import create_app

app = create_app()
