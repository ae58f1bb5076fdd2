"""Triton kernels of the encoder's fast path (SAM's global and windowed attention) and the support they share."""
