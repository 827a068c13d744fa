"""Read transactions from the chains: Esplora's REST API for BTC (httpx) and Ethereum JSON-RPC for ETH and
BNB (web3). Each reader answers one question reconciliation asks: is this transaction on the chain, to
which address, for how much, with how many confirmations (None: not found)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

import httpx
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import TransactionNotFound

from config import Settings

# Importing web3 imports py_ecc, which raises the whole process's recursion limit to 100,000; C code that
# recurses (the json parser on "[[[[…") then overflows the C stack and kills the process instead of raising
# RecursionError. We use no elliptic-curve maths, so the interpreter's own limit is put back.
PYTHON_RECURSION_LIMIT = 1000
sys.setrecursionlimit(min(sys.getrecursionlimit(), PYTHON_RECURSION_LIMIT))

SATS = Decimal(10) ** 8
WEI = Decimal(10) ** 18


@dataclass(frozen=True)
class ChainTx:
    txid: str
    to: str
    amount: Decimal
    confirmations: int


class ChainUnreadable(Exception):
    """The node could not be asked (down, 5xx, bad answer): the check is ERROR, never a verdict."""


class ChainReader(Protocol):
    async def transaction(self, txid: str) -> ChainTx | None: ...

    async def balance(self, address: str) -> Decimal: ...

    async def close(self) -> None: ...


class EsploraReader:
    """BTC through an Esplora REST API (`/tx/{txid}`, `/tx/{txid}/status`, `/blocks/tip/height`)."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout)

    async def _get(self, path: str) -> httpx.Response:
        try:
            r = await self._http.get(path)
        except httpx.TransportError as e:
            raise ChainUnreadable(f"esplora unreachable: {type(e).__name__}") from e
        if r.status_code >= 500:
            raise ChainUnreadable(f"esplora answered {r.status_code}")
        return r

    async def transaction(self, txid: str) -> ChainTx | None:
        r = await self._get(f"/tx/{txid}")
        if r.status_code == 404:
            return None
        tx = r.json()
        status = (await self._get(f"/tx/{txid}/status")).json()
        confirmations = 0
        if status.get("confirmed"):
            tip = int((await self._get("/blocks/tip/height")).text)
            confirmations = tip - int(status["block_height"]) + 1
        out = tx["vout"][0]  # the payment output (change, if any, follows)
        return ChainTx(
            txid=tx["txid"],
            to=str(out["scriptpubkey_address"]),
            amount=Decimal(int(out["value"])) / SATS,
            confirmations=confirmations,
        )

    async def balance(self, address: str) -> Decimal:
        """Confirmed funded minus spent outputs of the address (`/address/{addr}` chain_stats)."""
        r = await self._get(f"/address/{address}")
        if r.status_code >= 400:
            raise ChainUnreadable(f"esplora answered {r.status_code} for the address")
        stats = r.json()["chain_stats"]
        return Decimal(int(stats["funded_txo_sum"]) - int(stats["spent_txo_sum"])) / SATS

    async def close(self) -> None:
        await self._http.aclose()


class EvmReader:
    """ETH or BNB through Ethereum JSON-RPC (`eth_getTransactionByHash`, `eth_getTransactionReceipt`,
    `eth_blockNumber`) with web3 as the client."""

    def __init__(self, rpc_url: str, *, timeout: float = 10.0) -> None:
        self._w3 = AsyncWeb3(AsyncHTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))

    async def transaction(self, txid: str) -> ChainTx | None:
        h = txid if txid.startswith("0x") else "0x" + txid
        try:
            tx = await self._w3.eth.get_transaction(h)  # type: ignore[arg-type]
        except TransactionNotFound:
            return None
        except Exception as e:
            raise ChainUnreadable(f"rpc failed: {type(e).__name__}") from e
        try:
            receipt = await self._w3.eth.get_transaction_receipt(h)  # type: ignore[arg-type]
            tip = await self._w3.eth.block_number
        except TransactionNotFound:
            return None
        except Exception as e:
            raise ChainUnreadable(f"rpc failed: {type(e).__name__}") from e
        ok = receipt.get("status") == 1
        block = receipt.get("blockNumber")
        confirmations = tip - block + 1 if ok and block is not None else 0
        return ChainTx(
            txid=h,
            to=str(tx.get("to") or "").lower(),
            amount=Decimal(int(tx.get("value", 0))) / WEI,
            confirmations=confirmations,
        )

    async def balance(self, address: str) -> Decimal:
        """`eth_getBalance` at the latest block, in ether (or BNB)."""
        try:
            wei = await self._w3.eth.get_balance(self._w3.to_checksum_address(address))
        except Exception as e:
            raise ChainUnreadable(f"rpc failed: {type(e).__name__}") from e
        return Decimal(int(wei)) / WEI

    async def close(self) -> None:
        await self._w3.provider.disconnect()


def chain_urls(settings: Settings) -> dict[str, str]:
    """Currency -> node URL; outside production an empty setting means the local sandbox chain."""
    base = f"http://127.0.0.1:{settings.sandbox_port + 5}"
    sandbox = (
        {}
        if settings.is_production
        else {"BTC": f"{base}/btc/api", "ETH": f"{base}/eth", "BNB": f"{base}/bnb"}
    )
    configured = {"BTC": settings.chain_btc_url, "ETH": settings.chain_eth_url, "BNB": settings.chain_bnb_url}
    return {c: configured[c] or sandbox.get(c, "") for c in configured if configured[c] or c in sandbox}


def build_readers(urls: dict[str, str]) -> dict[str, ChainReader]:
    return {c: (EsploraReader(u) if c == "BTC" else EvmReader(u)) for c, u in urls.items()}
