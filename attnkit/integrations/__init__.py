"""Integrations of attnkit's ops with other libraries (each in its own module, imported on demand)."""
