"""The dashboard's layout rules (Textual CSS), apart from its behaviour."""

DASHBOARD_CSS = """
    #plots {
        height: 1fr;
    }
    #panels {
        height: 13;
    }
    #main.-compact #panels {
        height: 10;
    }
    #main.-compact ConfigPanel {
        display: none;
    }
    #main.-compact MetricsPanel {
        width: 38;
    }
    #main.-compact StatusBar Bar {
        width: 16;
    }
    """
