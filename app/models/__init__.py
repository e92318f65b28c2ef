"""Models on this machine: kinds, GGUF and diffusers inspection, the library, import/export."""
