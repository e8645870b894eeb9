"""Built-in rewarder plugin (filled in by the rewarders work)."""
