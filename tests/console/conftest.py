"""The console's browser-test harness: the payments stack (real API under uvicorn on a free port, the
payments and ops workers, the sandbox bank and venues; tests/payments/conftest.py) and ONE headless
Debian Chromium driven by Playwright for the whole package (`/usr/bin/chromium`; Playwright never
downloads a browser here).

    async def test_something(stack, console: Console):
        alice = await make_staff(stack, ["approver"])
        page = await console.login(alice)            # a fresh browser context, signed in with TOTP
        await page.goto(console.url("/withdrawals"))
        await console.shot(page, "withdrawals")      # tests/console/output/<test>/withdrawals.png

Every test gets fresh browser contexts (no shared cookies); a failing test's open pages are saved as
screenshots too (`output/<test>/failure-N.png`). The stack's settings allow staff routes only from
127.0.0.1 (`STAFF_IP_ALLOWLIST`), so a request from 127.0.0.2 shows the allowlist at work.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass, field
from pathlib import Path

import pyotp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright
from sqlalchemy import text

from config import Settings
from models.sealed import seal
from services.passwords import hash_password
from tests import totp_codes
from tests.payments import conftest as payments_stack
from tests.payments.conftest import PASSWORD, Stack

stack = payments_stack.stack  # the payments stack fixture, re-used here (package scope: this package)

os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
CHROMIUM = os.environ.get("CONSOLE_TEST_CHROMIUM", "/usr/bin/chromium")
OUTPUT = Path(__file__).parent / "output"


@pytest.fixture(scope="package")
def settings(database_url: str, temporal_address: str) -> Settings:
    """The session's settings plus the console's: staff routes from 127.0.0.1 only, a short idle timeout
    is not set here (tests that need one build their own app)."""
    return Settings(
        environment="test",
        database_url=database_url,
        temporal_address=temporal_address,
        market_data_streams=False,
        staff_ip_allowlist="127.0.0.1/32, ::1/128",
        temporal_ui_url="http://127.0.0.1:8233",
    )


@dataclass
class StaffMember:
    id: uuid.UUID
    email: str
    roles: list[str]
    totp: pyotp.TOTP | None
    password: str = PASSWORD
    last_step: int = 0

    def next_code(self) -> str:
        """A code for a time step after the last one used (each is accepted once, in order; the drift
        window allows one step ahead)."""
        assert self.totp is not None
        code, self.last_step = totp_codes.next_code(self.totp, self.last_step)
        return code


async def make_staff(stack: Stack, roles: list[str], *, enrolled: bool = True) -> StaffMember:
    """A staff user straight in the database, with TOTP enrolled (or not, to test enrolment)."""
    email = f"staff-{uuid.uuid4().hex[:10]}@broker.example"
    user_id = uuid.uuid4()
    secret = pyotp.random_base32()
    async with stack.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO users (id, email, password_hash, roles, email_verified, twofa_enabled, "
                "twofa_secret, first_name, last_name) "
                "VALUES (:id, :e, :p, :r, true, :on, :s, 'Staff', 'Member')"
            ),
            {
                "id": user_id,
                "e": email,
                "p": hash_password(PASSWORD),
                "r": roles,
                "on": enrolled,
                "s": seal(secret) if enrolled else None,
            },
        )
    return StaffMember(user_id, email, roles, pyotp.TOTP(secret) if enrolled else None)


@dataclass
class Console:
    """The browser and where the console is; tracks every page so failures can be photographed."""

    browser: Browser
    base: str
    out: Path
    contexts: list[BrowserContext] = field(default_factory=list)

    def url(self, path: str = "") -> str:
        return f"{self.base}/console{path}"

    async def page(self) -> Page:
        context = await self.browser.new_context(base_url=self.base)
        context.set_default_timeout(30_000)  # waits on state; generous for a loaded machine
        self.contexts.append(context)
        return await context.new_page()

    async def login(self, staff: StaffMember) -> Page:
        page = await self.page()
        await page.goto(self.url("/login"))
        await page.fill("#email", staff.email)
        await page.fill("#password", staff.password)
        await page.fill("#totp_code", staff.next_code())
        await page.click("#login")
        await page.wait_for_url(self.url(""))
        await page.wait_for_selector("#who")
        return page

    async def shot(self, page: Page, name: str) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM)
        try:
            yield b
        finally:
            await b.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest_asyncio.fixture(loop_scope="session")
async def console(request: pytest.FixtureRequest, browser: Browser, stack: Stack) -> AsyncIterator[Console]:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    c = Console(browser=browser, base=stack.api_url, out=OUTPUT / name)
    shutil.rmtree(c.out, ignore_errors=True)  # this run's screenshots only
    try:
        yield c
    finally:
        if request.node.stash.get(_FAILED, False):
            n = 0
            for context in c.contexts:
                for page in context.pages:
                    n += 1
                    try:
                        await c.shot(page, f"failure-{n}")
                    except Exception as e:  # a page that is gone cannot be photographed
                        print(f"no failure screenshot of page {n}: {e}")
            print(f"console screenshots: {c.out}")
        for context in c.contexts:
            await context.close()
