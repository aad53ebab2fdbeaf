"""Frappe/ERPNext-compatible HTTP simulator: real uvicorn servers on loopback, one per simulated site.

Imports nothing from the rest of erpsync_tui on purpose: it stands in for the outside world.
"""

from .cluster import SimCluster
from .errors import FrappeError
from .faults import Faults
from .site import SimSite
from .webhooks import SIGNATURE_HEADER, sign_webhook

__all__ = ["SIGNATURE_HEADER", "Faults", "FrappeError", "SimCluster", "SimSite", "sign_webhook"]
