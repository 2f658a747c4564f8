"""The control plane: settings, the database layer, the study spec and the FastAPI app.

The service never imports worker/ or objectives' training code; it reads only the
torch-free parameter registry to validate specs.
"""
