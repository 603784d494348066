"""A client for the workers: one Python call or one command per job, sync or async, results downloaded.

Light on purpose: requests, boto3 and the runpod SDK's endpoint client; no torch, nothing of the workers.
"""

from audio_client.jobs import AudioClient, ClientError, JobResult
from audio_client.routing import Route, load_routes

__all__ = ["AudioClient", "ClientError", "JobResult", "Route", "load_routes"]
