"""Chat prompts: template families, the Jinja sandbox, template choice, reasoning split."""
