"""The window's pages: each binds widgets to adapters and holds no business logic."""
