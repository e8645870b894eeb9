"""Built-in trainers (placeholder until implemented)."""
