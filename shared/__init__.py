"""The one library every worker uses: settings, schemas, volume, model cache, audio, storage, pipeline.

Importing it puts the Hugging Face libraries in offline mode before any of them is imported: they read
these variables once, at their own import, and a worker never reaches a hub at run time.
"""

import os

OFFLINE_VARIABLES = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
os.environ.update(OFFLINE_VARIABLES)
# The runpod SDK reads its level once, at import, and defaults to DEBUG (every job's whole output).
_LEVELS = {"TRACE": "TRACE", "DEBUG": "DEBUG", "INFO": "INFO", "SUCCESS": "INFO", "WARNING": "WARN"}
os.environ["RUNPOD_LOG_LEVEL"] = _LEVELS.get(os.environ.get("LOG_LEVEL", "INFO").strip().upper() or "INFO", "ERROR")
