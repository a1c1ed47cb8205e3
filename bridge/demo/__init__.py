"""The demo ASIOU: the reference schema and a deterministic synthetic school generator."""
