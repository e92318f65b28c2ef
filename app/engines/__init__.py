"""The engines that run models: one worker base, llama.cpp chat, diffusers images."""
