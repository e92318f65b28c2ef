"""What every engine worker shares: the process, the client base, the serve loop, the messages."""
