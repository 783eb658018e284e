"""Log lines of the simulated services: normal chatter and error lines.

Templates hold placeholders (``{hex}``, ``{uid}``, ``{ip}``, ``{ms}`` ...) that
are filled with variable parts, the way real lines differ by ids, numbers and
addresses; a log-template miner must mask them to see the template.

Examples
--------
>>> import random
>>> w = LogText(random.Random(5))
>>> line = w.render("order {hex} accepted qty={qty} symbol={sym}")
>>> line.startswith("order ") and "symbol=" in line
True
>>> len(w.chatter("api-gateway", 3))
3
"""

from __future__ import annotations

import random

__all__ = ["CALLER_TEMPLATES", "CHATTER", "LogText"]

CHATTER: dict[str, list[tuple[str, str]]] = {
    "api-gateway": [
        ("info", "GET /api/v1/ticker/{sym} 200 {ms}ms client={ip} req_id={hex}"),
        ("info", "POST /api/v1/orders 201 {ms}ms user={uid} req_id={hex}"),
        ("info", "GET /api/v1/account/balances 200 {ms}ms user={uid} req_id={hex}"),
        ("debug", "websocket session {hex} subscribed to {sym}@depth"),
    ],
    "order-service": [
        ("info", "order {hex} accepted side={side} qty={qty} symbol={sym} user={uid}"),
        ("info", "order {hex} filled price={price} symbol={sym}"),
        ("info", "order {hex} cancelled by user={uid}"),
    ],
    "matching-engine": [
        ("info", "matched {n} orders in book {sym} depth={n} seq={off}"),
        ("info", "book {sym} snapshot written seq={off}"),
    ],
    "wallet-service": [
        ("info", "balance snapshot user={uid} asset={asset} version={n}"),
        ("info", "withdrawal {hex} queued asset={asset} amount={qty}"),
        ("info", "deposit {hex} credited asset={asset} confirmations={n}"),
    ],
    "market-data": [
        ("info", "published ticker {sym} price={price} subscribers={n}"),
        ("info", "kline 1m {sym} closed volume={qty}"),
    ],
    "risk-engine": [
        ("info", "pre-trade check order={hex} user={uid} result=pass latency={n}us"),
        ("info", "margin recalculated user={uid} ratio={pct}"),
    ],
    "user-service": [
        ("info", "session refreshed user={uid} ttl=3600"),
        ("info", "login ok user={uid} ip={ip} mfa=totp"),
    ],
    "postgres": [
        ("info", "checkpoint complete: wrote {n} buffers ({pct}%); 0 WAL file(s) added"),
        ("info", 'automatic vacuum of table "trading.public.orders": index scans: {n}'),
    ],
    "redis": [
        ("info", "{n} changes in 60 seconds. Saving..."),
        ("info", "Background saving terminated with success"),
    ],
    "kafka": [
        ("info", "[LocalLog partition=trades-{p}, dir=/var/lib/kafka/data] Rolled new log segment "
                 "at offset {off}"),
    ],
}

#: occasional background errors every service has (no fault behind them)
BACKGROUND = [
    ("warn", "slow request {ms}ms path=/internal/health req_id={hex}"),
    ("error", "client disconnected before response req_id={hex} ip={ip}"),
]

#: what a caller logs when a callee misbehaves, by the callee's symptom
CALLER_TEMPLATES: dict[str, tuple[str, str]] = {
    "down": ("error", "call to {callee} failed: dial tcp {ip}:{port}: connect: connection refused"
                      " req_id={hex}"),
    "error": ("error", "call to {callee} returned status={code} req_id={hex}"),
    "slow": ("warn", "call to {callee} slow: {ms}ms (timeout 3000ms) req_id={hex}"),
}

_SYMS = ["BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT", "DOGE-USDT", "BNB-USDT"]
_ASSETS = ["BTC", "ETH", "USDT", "SOL"]


class LogText:
    """Renders templates with variable parts from a seeded RNG."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def render(self, template: str, **fixed: object) -> str:
        r = self.rng
        values: dict[str, object] = {
            "hex": f"{r.getrandbits(48):012x}",
            "uid": f"u{r.randrange(10_000, 999_999)}",
            "ip": f"10.0.{r.randrange(1, 4)}.{r.randrange(2, 250)}",
            "ms": r.randrange(3, 900),
            "sym": r.choice(_SYMS),
            "side": r.choice(("buy", "sell")),
            "qty": round(r.uniform(0.001, 25.0), 4),
            "price": round(r.uniform(0.1, 98000.0), 2),
            "pct": round(r.uniform(0.1, 99.0), 1),
            "n": r.randrange(1, 5000),
            "p": r.randrange(0, 12),
            "off": r.randrange(1_000_000, 90_000_000),
            "asset": r.choice(_ASSETS),
            "code": r.choice((500, 502, 503)),
            "port": 8080,
        }
        values.update(fixed)
        return template.format(**values)

    def chatter(self, service: str, n: int) -> list[tuple[str, str]]:
        """``n`` normal lines of ``service`` as (level, message)."""
        pool = CHATTER.get(service) or CHATTER["kafka"]
        out = []
        for _ in range(n):
            level, tpl = pool[self.rng.randrange(len(pool))]
            out.append((level, self.render(tpl)))
        return out

    def background(self) -> tuple[str, str]:
        level, tpl = BACKGROUND[self.rng.randrange(len(BACKGROUND))]
        return level, self.render(tpl)
