"""The SageMaker /opt/ml contract: paths, config files, hyperparameters, data formats, training entry."""
