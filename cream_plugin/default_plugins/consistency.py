"""Built-in consistency (placeholder until implemented)."""
