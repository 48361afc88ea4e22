"""Fuzzing of every decoder with atheris: targets, seed corpus from the tests, the runner."""
