"""Benchmarks: each runs our code and its anchors interleaved in one invocation (see docs/benchmarks.md)."""
