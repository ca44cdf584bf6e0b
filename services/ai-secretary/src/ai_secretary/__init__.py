"""ai-secretary."""
