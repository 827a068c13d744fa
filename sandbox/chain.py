"""A sandbox chain for BTC, ETH and BNB: where the sandbox venues' withdrawals are broadcast and customer
deposits come from, read through the protocols real nodes speak.

- BTC: an Esplora REST subset under `/btc/api`: `GET /tx/{txid}`, `GET /tx/{txid}/status`,
  `GET /address/{addr}`, `GET /blocks/tip/height` (amounts in satoshis, as Esplora sends them).
- ETH and BNB (BSC): Ethereum JSON-RPC at `POST /eth` and `POST /bnb`: `eth_chainId`, `eth_blockNumber`,
  `eth_getTransactionByHash`, `eth_getTransactionReceipt`, `eth_getBalance` (hex quantities in wei).

Blocks are mined on a timer (fast: confirmations come in seconds) and a broadcast goes into the next block;
`POST /_control/mine` adds blocks at once. Faults: `POST /_control/drop {"txid"}` removes a transaction as
a reorg would, so a withdrawal the venue reports as sent, or a deposit it credited, is absent on-chain.

The venues in this process broadcast through `sandbox.market.CHAIN_LISTENERS` (registered when this module
is imported, i.e. when the chain sandbox is started alongside them).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import web

from sandbox import market

CHAINS = {"BTC": "btc", "ETH": "eth", "BNB": "bnb"}
CHAIN_IDS = {"eth": 1, "bnb": 56}
SATS = Decimal(10) ** 8
WEI = Decimal(10) ** 18
EXTERNAL = {"btc": "bc1qexternalsender0000000000000000000", "eth": "0x" + "ee" * 20, "bnb": "0x" + "bb" * 20}


@dataclass
class ChainTx:
    txid: str
    chain: str
    sender: str
    to: str
    amount: Decimal
    block: int
    time_s: int


BLOCK_SECONDS = {"btc": 2.0, "eth": 0.5, "bnb": 0.3}  # sandbox-fast blocks, so confirmations come quickly


@dataclass
class Chain:
    """One chain: blocks are mined on a timer (and by `mine`); a broadcast goes into the next block."""

    name: str
    mined: int = 100  # blocks added by broadcasts and `mine`, on top of the timer's
    started: float = field(default_factory=time.monotonic)
    txs: dict[str, ChainTx] = field(default_factory=dict)

    @property
    def height(self) -> int:
        return self.mined + int((time.monotonic() - self.started) / BLOCK_SECONDS[self.name])

    def broadcast(
        self, *, to: str, amount: Decimal, sender: str | None = None, txid: str | None = None
    ) -> ChainTx:
        key = _key(self.name, txid) if txid else None
        if key and key in self.txs:
            return self.txs[key]  # a rebroadcast of the same transaction
        self.mined += 1
        tx = ChainTx(
            txid=key or _key(self.name, secrets.token_hex(32)), chain=self.name,
            sender=sender or EXTERNAL[self.name], to=to, amount=amount, block=self.height,
            time_s=int(time.time()),
        )  # fmt: skip
        self.txs[tx.txid] = tx
        return tx

    def confirmations(self, tx: ChainTx) -> int:
        return self.height - tx.block + 1

    def balance(self, address: str) -> tuple[Decimal, Decimal, int]:
        a = address.lower()  # EVM addresses arrive checksummed (mixed case) or not
        funded = sum((t.amount for t in self.txs.values() if t.to.lower() == a), Decimal(0))
        spent = sum((t.amount for t in self.txs.values() if t.sender.lower() == a), Decimal(0))
        count = sum(1 for t in self.txs.values() if a in (t.to.lower(), t.sender.lower()))
        return funded, spent, count


def _hot_wallet(venue: str, chain: str) -> str:
    """The venue's sending address on a chain (stable per venue, valid for the chain's format)."""
    digest = hashlib.sha256(f"{venue}:{chain}".encode()).hexdigest()
    return f"bc1q{digest[:38]}" if chain == "btc" else f"0x{digest[:40]}"


def _key(chain: str, txid: str) -> str:
    """Esplora txids are bare hex; EVM hashes are 0x-prefixed lowercase."""
    bare = txid.lower().removeprefix("0x")
    return bare if chain == "btc" else "0x" + bare


@dataclass
class ChainState:
    chains: dict[str, Chain] = field(default_factory=lambda: {n: Chain(n) for n in ("btc", "eth", "bnb")})

    def for_asset(self, asset: str) -> Chain | None:
        name = CHAINS.get(asset)
        return self.chains.get(name) if name else None

    def on_venue_event(self, kind: str, event: dict[str, Any]) -> None:
        """A venue's withdrawal leaves for `address`; a deposit arrives at one of the venue's addresses."""
        chain = self.for_asset(str(event["asset"]))
        if chain is None:
            return
        sender = _hot_wallet(str(event.get("venue", "venue")), chain.name)
        if kind == "withdrawal":
            chain.broadcast(
                to=str(event["address"]), amount=event["amount"], sender=sender, txid=event["tx_id"]
            )
        elif kind == "deposit":
            chain.broadcast(to=str(event["address"]), amount=event["amount"], txid=event["tx_id"])


STATE: ChainState = ChainState()  # one chain per process, as there is one Bitcoin
STATE_KEY = web.AppKey("chain_state", ChainState)
if STATE.on_venue_event not in market.CHAIN_LISTENERS:
    market.CHAIN_LISTENERS.append(STATE.on_venue_event)


# --- Esplora (BTC) -----------------------------------------------------------------------------------


def _btc(request: web.Request) -> Chain:
    return request.app[STATE_KEY].chains["btc"]


def _status(chain: Chain, tx: ChainTx) -> dict[str, Any]:
    return {
        "confirmed": True,
        "block_height": tx.block,
        "block_hash": f"{tx.block:064x}",
        "block_time": tx.time_s,
    }


async def esplora_tx(request: web.Request) -> web.Response:
    chain = _btc(request)
    tx = chain.txs.get(_key("btc", request.match_info["txid"]))
    if tx is None:
        return web.Response(status=404, text="Transaction not found")
    sats = int(tx.amount * SATS)
    return web.json_response(
        {
            "txid": tx.txid, "version": 2, "locktime": 0, "size": 222, "weight": 561, "fee": 1410,
            "vin": [{"prevout": {"scriptpubkey_address": tx.sender, "value": sats + 1410}}],
            "vout": [{"scriptpubkey_address": tx.to, "scriptpubkey_type": "v0_p2wpkh", "value": sats}],
            "status": _status(chain, tx),
        }
    )  # fmt: skip


async def esplora_tx_status(request: web.Request) -> web.Response:
    chain = _btc(request)
    tx = chain.txs.get(_key("btc", request.match_info["txid"]))
    if tx is None:
        return web.Response(status=404, text="Transaction not found")
    return web.json_response(_status(chain, tx))


async def esplora_address(request: web.Request) -> web.Response:
    address = request.match_info["address"]
    funded, spent, count = _btc(request).balance(address)
    return web.json_response(
        {
            "address": address,
            "chain_stats": {"funded_txo_count": count, "funded_txo_sum": int(funded * SATS),
                            "spent_txo_count": 0, "spent_txo_sum": int(spent * SATS), "tx_count": count},
            "mempool_stats": {"funded_txo_count": 0, "funded_txo_sum": 0, "spent_txo_count": 0,
                              "spent_txo_sum": 0, "tx_count": 0},
        }
    )  # fmt: skip


async def esplora_tip(request: web.Request) -> web.Response:
    return web.Response(text=str(_btc(request).height))


# --- Ethereum JSON-RPC (ETH, BNB) ------------------------------------------------------------------


def _rpc_result(req_id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": req_id, "result": result}


def _evm_tx(chain: Chain, tx: ChainTx) -> dict[str, Any]:
    return {
        "hash": tx.txid, "from": tx.sender, "to": tx.to, "value": hex(int(tx.amount * WEI)),
        "blockNumber": hex(tx.block), "blockHash": "0x" + f"{tx.block:064x}", "transactionIndex": "0x0",
        "nonce": "0x0", "gas": hex(21000), "gasPrice": hex(10**9), "input": "0x", "type": "0x0",
        "chainId": hex(CHAIN_IDS[chain.name]), "v": "0x25", "r": "0x1", "s": "0x1",
    }  # fmt: skip


def _receipt(chain: Chain, tx: ChainTx) -> dict[str, Any]:
    return {
        "transactionHash": tx.txid, "transactionIndex": "0x0", "blockNumber": hex(tx.block),
        "blockHash": "0x" + f"{tx.block:064x}", "from": tx.sender, "to": tx.to, "status": "0x1",
        "gasUsed": hex(21000), "cumulativeGasUsed": hex(21000), "effectiveGasPrice": hex(10**9),
        "contractAddress": None, "logs": [], "logsBloom": "0x" + "00" * 256, "type": "0x0",
    }  # fmt: skip


def _rpc_handler(name: str) -> Any:
    async def handle(request: web.Request) -> web.Response:
        chain = request.app[STATE_KEY].chains[name]
        body = await request.json()
        calls = body if isinstance(body, list) else [body]
        out = []
        for call in calls:
            method, params, req_id = call.get("method"), call.get("params") or [], call.get("id")
            if method == "eth_chainId":
                out.append(_rpc_result(req_id, hex(CHAIN_IDS[name])))
            elif method == "eth_blockNumber":
                out.append(_rpc_result(req_id, hex(chain.height)))
            elif method == "eth_getTransactionByHash":
                tx = chain.txs.get(_key(name, str(params[0])))
                out.append(_rpc_result(req_id, _evm_tx(chain, tx) if tx else None))
            elif method == "eth_getTransactionReceipt":
                tx = chain.txs.get(_key(name, str(params[0])))
                out.append(_rpc_result(req_id, _receipt(chain, tx) if tx else None))
            elif method == "eth_getBalance":
                funded, spent, _ = chain.balance(str(params[0]))
                out.append(_rpc_result(req_id, hex(int((funded - spent) * WEI))))
            else:
                error = {"code": -32601, "message": f"the method {method} does not exist"}
                out.append({"jsonrpc": "2.0", "id": req_id, "error": error})
        return web.json_response(out if isinstance(body, list) else out[0])

    return handle


# --- control ---------------------------------------------------------------------------------------


async def control_tx(request: web.Request) -> web.Response:
    """Broadcast a transaction by hand: {"asset", "to", "amount", "from"?, "txid"?}."""
    body = await request.json()
    chain = request.app[STATE_KEY].for_asset(str(body.get("asset")))
    if chain is None:
        return web.json_response({"error": "unknown asset"}, status=422)
    tx = chain.broadcast(to=str(body["to"]), amount=Decimal(str(body["amount"])), sender=body.get("from"),
                         txid=body.get("txid"))  # fmt: skip
    return web.json_response({"txid": tx.txid, "block": tx.block})


async def control_mine(request: web.Request) -> web.Response:
    body = await request.json()
    state = request.app[STATE_KEY]
    names = [CHAINS[body["asset"]]] if body.get("asset") else list(state.chains)
    for n in names:
        state.chains[n].mined += int(body.get("blocks", 1))
    return web.json_response({n: state.chains[n].height for n in names})


async def control_drop(request: web.Request) -> web.Response:
    """Fault: the transaction disappears from the chain (a reorg, or a venue that never really sent)."""
    body = await request.json()
    txid = str(body["txid"])
    dropped = [n for n, c in request.app[STATE_KEY].chains.items() if c.txs.pop(_key(n, txid), None)]
    return web.json_response({"dropped": dropped}, status=200 if dropped else 404)


def create_app(state: ChainState | None = None) -> web.Application:
    app = web.Application()
    app[STATE_KEY] = state or STATE
    r = app.router
    r.add_get("/btc/api/tx/{txid}", esplora_tx)
    r.add_get("/btc/api/tx/{txid}/status", esplora_tx_status)
    r.add_get("/btc/api/address/{address}", esplora_address)
    r.add_get("/btc/api/blocks/tip/height", esplora_tip)
    for name in CHAIN_IDS:
        r.add_post(f"/{name}", _rpc_handler(name))
    r.add_post("/_control/tx", control_tx)
    r.add_post("/_control/mine", control_mine)
    r.add_post("/_control/drop", control_drop)
    return app
