"""fashion_clip: the library every component shares.

- `images`: decoding and colour-mode normalisation of uploads (no torch).
- `modeldir`: the on-disk layout of an installed model and its manifest (no torch).
- `embedding`: the one embedding core (open_clip, torch): load, preprocess, encode, normalise.
- `catalog`, `index`: catalogs and the Annoy index bundle built from them.
"""

__version__ = "0.1.0"
