"""The one library every handler uses: schemas, volume paths, model cache, audio, storage, pipeline."""
