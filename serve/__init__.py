"""HTTP serving: the Flask app (``app``), the loaded model (``model_store``), gunicorn's settings."""
