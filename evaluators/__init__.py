"""Built-in evaluators: lm-eval tasks for ARC, OpenBookQA, Social IQa and GSM8K."""
