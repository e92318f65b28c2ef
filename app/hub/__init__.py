"""The Hugging Face Hub (or an HF_ENDPOINT mirror): search, the one quant rule, downloads."""
