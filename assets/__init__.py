"""Shipped data (models, model cards, blendshape tables, face template), read through importlib.resources."""
