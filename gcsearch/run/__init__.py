"""Running a study: the worker loop, one trial, local worker processes, progress lines."""
