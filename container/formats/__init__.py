"""Data formats: decoders to one in-memory ``Dataset`` and encoders back, shared by training and serving."""
