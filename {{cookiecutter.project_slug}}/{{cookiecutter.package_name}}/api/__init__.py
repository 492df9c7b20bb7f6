"""The HTTP layer: app factory, route class, routes, middleware and schemas."""
