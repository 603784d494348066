"""MusicGen (Meta): text- and melody-conditioned music, through transformers."""

from shared.logs import silence

# MusicGen's pad, bos and decoder-start token is the codebook size (its embeddings have one row more): transformers'
# own MusicGen check allows it, the generic check its composite config also runs does not, and warns each time a
# config is built (every load, every tiny model built).
silence("transformers.configuration_utils", r"^Model config: (pad|bos|decoder_start)_token_id must be `None` or an")
