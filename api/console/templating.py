"""Jinja2 templates of the console and the context every page gets (the staff member, their CSRF
token, `can(...)` for showing only the buttons they may use, and the navigation they may see)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.console.deps import Staff
from services.staff.permissions import Permission

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


@dataclass(frozen=True)
class NavEntry:
    label: str
    path: str
    permission: Permission


# The navigation bar, in order. A screen appears only for staff holding its permission.
NAV: list[NavEntry] = [
    NavEntry("Dashboard", "/console", Permission.DASHBOARD_VIEW),
    NavEntry("Withdrawals", "/console/withdrawals", Permission.WITHDRAWAL_VIEW),
    NavEntry("Audit log", "/console/audit", Permission.AUDIT_VIEW),
    NavEntry("Staff", "/console/staff", Permission.STAFF_MANAGE),
    NavEntry("Permissions", "/console/permissions", Permission.PERMISSIONS_VIEW),
]


def add_nav(entry: NavEntry, *, before: str | None = None) -> None:
    """Register a screen's navigation entry (other console modules call this at import)."""
    if any(e.path == entry.path for e in NAV):
        return
    index = next((i for i, e in enumerate(NAV) if e.path == before), len(NAV))
    NAV.insert(index, entry)


def workflow_url(request: Request, workflow_id: str) -> str:
    """The saga's page in the Temporal Web UI (`TEMPORAL_UI_URL`; empty: the local dev server's UI)."""
    settings = request.app.state.settings
    base = (settings.temporal_ui_url or f"http://127.0.0.1:{settings.temporal_ui_port}").rstrip("/")
    return f"{base}/namespaces/{quote(settings.temporal_namespace)}/workflows/{quote(workflow_id)}"


def render(
    request: Request, template: str, staff: Staff | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """A console page. `staff` is None only on the login pages."""
    base: dict[str, Any] = {
        "staff": staff,
        "csrf_token": staff.session.csrf_token if staff else "",
        "can": staff.can if staff else (lambda _p: False),
        "nav": [e for e in NAV if staff and staff.can(e.permission)],
        "path": request.url.path,
        "workflow_url": lambda workflow_id: workflow_url(request, workflow_id),
    }
    return templates.TemplateResponse(request, template, {**base, **context}, status_code=status_code)
