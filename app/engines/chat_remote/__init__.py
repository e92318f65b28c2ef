"""The remote chat engine: an OpenAI-compatible server (vLLM, SGLang, llama-server, Ollama, TGI)."""
