"""Tool functions of the kind an LLM writes for an arena; read as text and run in the sandbox.

The correctness test runs each one in-process as well and expects identical JSON results.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal, TypedDict


@dataclass
class LineItem:
    sku: str
    quantity: int
    unit_price: str


@dataclass
class Invoice:
    customer: str
    items: list[LineItem] = field(default_factory=list)
    currency: Literal["EUR", "USD"] = "EUR"

    def total(self) -> Decimal:
        cents = Decimal("0.01")
        return sum((Decimal(i.unit_price) * i.quantity for i in self.items), Decimal(0)).quantize(
            cents, rounding=ROUND_HALF_UP
        )


class Flight(TypedDict):
    code: str
    departs: str
    minutes: int


_FLIGHTS: list[Flight] = [
    {"code": "LH400", "departs": "2025-03-01T09:30", "minutes": 535},
    {"code": "AF22", "departs": "2025-03-01T13:05", "minutes": 490},
    {"code": "BA117", "departs": "2025-03-02T08:15", "minutes": 470},
]


def invoice_total(customer: str, items: list[dict[str, Any]], vat_percent: float = 19.0) -> dict[str, Any]:
    invoice = Invoice(customer, [LineItem(**item) for item in items])
    net = invoice.total()
    vat = (net * Decimal(str(vat_percent)) / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return {"invoice": asdict(invoice), "net": str(net), "vat": str(vat), "gross": str(net + vat)}


def search_flights(day: str, max_minutes: int | None = None) -> list[dict[str, Any]]:
    wanted = date.fromisoformat(day)
    found = []
    for flight in _FLIGHTS:
        departs = datetime.fromisoformat(flight["departs"])
        if departs.date() == wanted and (max_minutes is None or flight["minutes"] <= max_minutes):
            arrives = departs + timedelta(minutes=flight["minutes"])
            found.append({**flight, "arrives": arrives.isoformat(timespec="minutes")})
    return sorted(found, key=lambda f: f["minutes"])


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return round(6371.0 * 2 * math.asin(math.sqrt(a)), 3)


def summarize(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "stdev": round(statistics.stdev(values), 9),
    }


def parse_config(text: str) -> dict[str, Any]:
    data = json.loads(text)
    return {key.lower(): value for key, value in sorted(data.items())}


def days_until(start: str, end: str) -> int:
    return (date.fromisoformat(end) - date.fromisoformat(start)).days
