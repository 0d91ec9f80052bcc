"""The gunicorn side: the hooks, the worker class, rolling reloads, the health responder."""
