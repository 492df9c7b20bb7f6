"""Routes: one module per group. ``detect`` is the example to edit."""
