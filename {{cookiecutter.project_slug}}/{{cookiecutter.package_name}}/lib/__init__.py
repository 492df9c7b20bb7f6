"""Helpers shared by the routes and the models."""
