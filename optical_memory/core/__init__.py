"""The leaf layer: records, modes and fit geometry, validation, the text tokenizer, page imaging and consumers.

Nothing here imports any other part of optical-memory; every other layer may import it.
"""
