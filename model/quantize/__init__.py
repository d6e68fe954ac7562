"""Smaller weights for reading and generating (never for training or saving): see `int8`."""
