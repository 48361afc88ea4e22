"""Pure maths of the image: Factorization Machines (``fm``) and WALS, metrics, and the model artifact.

Nothing here reads environment variables, /opt/ml files or HTTP; the container and serving layers call in.
"""
