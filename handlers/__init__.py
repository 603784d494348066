"""One folder per worker (see README.md). Importing `shared` first puts the model libraries offline."""

import shared  # noqa: F401
