"""The local OpenAI-compatible API: a face beside the CLI and the window (`hearth serve`)."""
