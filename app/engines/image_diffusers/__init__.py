"""Images on diffusers: the worker process (torch + diffusers), its messages, and the client."""
