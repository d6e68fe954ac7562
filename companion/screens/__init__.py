"""companion/screens."""
