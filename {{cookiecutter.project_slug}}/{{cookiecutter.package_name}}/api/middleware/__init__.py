"""Lifespan (event.py) and the request context and error envelope (http.py)."""
