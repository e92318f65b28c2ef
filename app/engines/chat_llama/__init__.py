"""Chat on llama.cpp: the worker process (llama-cpp-python), its messages, and the client."""
