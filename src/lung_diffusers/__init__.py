"""lung-diffusers: synthetic lung CT slices from semantic masks, as Hugging Face diffusers pipelines."""

__version__ = "0.1.0.dev0"
