"""Data formats: decoders to the one in-memory form of rows (``algorithm.csr.CSR``) and encoders back, shared
by training and serving."""
