"""The one library every worker uses: settings, schemas, volume, model cache, audio, storage, pipeline.

Importing it puts the Hugging Face libraries in offline mode before any of them is imported: they read
these variables once, at their own import, and a worker never reaches a hub at run time.
"""

import os

OFFLINE_VARIABLES = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
# Download and weight-loading progress bars are no log lines of a worker's (huggingface_hub and transformers read it).
QUIET_VARIABLES = {"HF_HUB_DISABLE_PROGRESS_BARS": "1"}
os.environ.update(OFFLINE_VARIABLES | QUIET_VARIABLES)

from shared.logs import sdk_log_level  # noqa: E402 (after the offline variables, before any library)

# The runpod SDK logs every job's whole output at its default, DEBUG: it follows LOG_LEVEL instead.
os.environ["RUNPOD_LOG_LEVEL"] = sdk_log_level()
