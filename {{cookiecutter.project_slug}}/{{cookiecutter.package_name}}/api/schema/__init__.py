"""Request (payload.py) and response (response.py) bodies."""
