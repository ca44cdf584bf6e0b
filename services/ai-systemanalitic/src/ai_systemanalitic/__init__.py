"""ai-systemanalitic."""
