"""The ways people reach the communicator: e-mail, Telegram and the web chat."""
