"""Running a run: the stage graph, the runner, artifacts, the run folder, preflight, processes."""
