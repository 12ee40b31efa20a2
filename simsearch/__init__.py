"""simsearch: a Siamese image encoder and the engine that ties it to the index.

Importing the package is cheap (no torch); the modules are the API:
images, datasets, encoder, checkpoint, losses, train, embed, evaluate, engine, demo, symbols.
"""

from simsearch.errors import DataError, EncoderMismatchError, ImageError, ModelError, SimSearchError

__all__ = ["DataError", "EncoderMismatchError", "ImageError", "ModelError", "SimSearchError"]
