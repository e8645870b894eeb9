"""Sub-commands of the ``cream`` CLI, one module each."""
