"""Checks of the numerics: gradients against finite differences, and gradient flow through time."""
