"""The live training dashboard (Textual): ``create_dashboard_app`` for the CLI and the tests."""

from femb_cli.dashboard.app import DashboardApp, create_dashboard_app

__all__ = ["DashboardApp", "create_dashboard_app"]
