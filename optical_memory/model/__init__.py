"""DeepSeek-OCR as a transformers-style model folder: configuration, the DeepEncoder (reference and fast path), the
MoE decoder, preprocessing, prompts, the checkpoint files and key map, the strict loader, and the OCR-2 backend.

Needs the ``[model]`` extra (torch, transformers, safetensors). Model code knows pages and modes, never the memory.
"""

from optical_memory.core.extras import require

for _module in ("torch", "transformers", "safetensors"):
    require(_module, "model")
