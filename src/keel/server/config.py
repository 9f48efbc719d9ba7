"""How ``keel server`` hands its options to worker processes (environment variables).

Kept apart from the app so the CLI can name them without importing FastAPI.
"""

from __future__ import annotations

BACKEND_ENV = "KEEL_SERVER_BACKEND_STORE_URI"
ARTIFACTS_ENV = "KEEL_SERVER_ARTIFACTS_DESTINATION"
