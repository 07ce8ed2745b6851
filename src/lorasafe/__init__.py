"""lorasafe: safety-align reasoning LLMs with LoRA and measure what it costs.

Importing the package stays light: torch, transformers, peft and matplotlib are imported by the
modules that need them, never here.
"""

__version__ = "0.1.0"
