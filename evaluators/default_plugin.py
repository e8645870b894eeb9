"""Built-in evaluator plugin (filled in by the evaluators work)."""
