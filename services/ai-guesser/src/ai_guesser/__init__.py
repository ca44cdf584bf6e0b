"""ai-guesser."""
