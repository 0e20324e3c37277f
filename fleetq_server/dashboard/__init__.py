"""The dashboard (issue 17): a static page served by every pod at /ui, which reads and
acts through the public REST API like any other client."""

from fleetq_server.dashboard.endpoint import DashboardEndpoint, dashboard_mounts

__all__ = ["DashboardEndpoint", "dashboard_mounts"]
