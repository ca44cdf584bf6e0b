"""ai-communicator."""
