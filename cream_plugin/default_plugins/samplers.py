"""Built-in samplers (placeholder until implemented)."""
