"""Tests that build and run the real image with a real Docker engine (marker ``docker``)."""
