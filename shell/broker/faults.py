"""Seeded broker misbehaviour: the fault profiles of `ratchet simulate --faults` and
`ratchet exchange --faults` (one parser, one set of rates)."""

from __future__ import annotations

from attrs import define

__all__ = ["PROFILES", "Faults"]

_RATES = ("transient", "permanent", "locked", "partial", "late", "drop", "lost", "stuck")

# Named fault profiles for `--faults NAME[,key=value...]` (a NAME=RATE after
# the profile overrides one of its rates).
PROFILES: dict[str, dict[str, float]] = {
    "none": {},
    "flaky": {"transient": 0.2},
    "alpaca": {
        "transient": 0.05,
        "locked": 0.05,
        "partial": 0.2,
        "late": 0.2,
        "drop": 0.01,
        "lost": 0.01,
    },
    "high": {
        "transient": 0.3,
        "permanent": 0.05,
        "locked": 0.1,
        "partial": 0.3,
        "late": 0.3,
        "drop": 0.05,
        "lost": 0.05,
        "stuck": 0.02,
    },
}


@define
class Faults:
    """Misbehaviour to inject, deterministic for a given seed and input. Each is a rate:

    - `transient`: an order or cancel refused for a passing reason (HTTP 503, or 429 when
      the 200 requests a minute are spent); the same client order id may be sent again.
    - `permanent`: an exit-side order refused for good (HTTP 422, order parameters invalid).
    - `locked`: a sell refused with HTTP 403 code 40310000 "insufficient qty available for
      order", as when shares are still held for an order whose cancel the broker has not
      released yet.
    - `partial`: a market order fills in two parts, half at one print and the rest at the next.
    - `late`: a cancel takes effect only at the symbol's next print; the order may fill first,
      and the cancel is then answered 422 "order is already filled".
    - `drop`: the connection drops while a command is sent (the command is lost); it comes
      back at the next print, followed by a snapshot of positions and orders.
    - `lost`: an order is created but the answer to its submission is lost (an HTTP timeout,
      reported as a refusal of unknown outcome); sent again, it is refused as a duplicate id.
    - `stuck`: a cancel is refused for good (HTTP 422 order is not cancelable).

    `ratchet exchange` shows the same faults on the wire (shell/exchange/venue.py): a 429 or
    a plain-text 503, an exit accepted then rejected on the stream, the 403, a market order's
    partial_fill then fill, a 204 cancel carried out at the next print, and a dropped link
    (the answer reset or too slow, the streams closed, requests cut for a second).
    """

    transient: float = 0.0
    seed: int = 0
    permanent: float = 0.0
    locked: float = 0.0
    partial: float = 0.0
    late: float = 0.0
    drop: float = 0.0
    lost: float = 0.0
    stuck: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Faults:
        """From `high`, `high,seed=7` or `transient=0.3,locked=0.1,seed=7`; ValueError names
        what is wrong."""
        values: dict[str, str] = {}
        expected = f"a profile ({', '.join(PROFILES)}) or NAME=VALUE with NAME one of seed, " + (
            ", ".join(_RATES)
        )
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = part.partition("=")
            if not sep and name in PROFILES:
                values.update({k: str(v) for k, v in PROFILES[name].items()})
                continue
            if not sep or (name not in _RATES and name != "seed"):
                raise ValueError(f"--faults: {part!r}: expected {expected}")
            values[name] = value
        rates: dict[str, float] = {}
        for name in _RATES:
            raw = values.get(name, "0")
            try:
                rate = float(raw)
            except ValueError:
                raise ValueError(f"--faults: {name}={raw!r}: a rate from 0 to 1") from None
            if not 0 <= rate <= 1:
                raise ValueError(f"--faults: {name}={raw}: allowed 0 to 1")
            rates[name] = rate
        raw_seed = values.get("seed", "0")
        try:
            seed = int(raw_seed)
        except ValueError:
            raise ValueError(f"--faults: seed={raw_seed!r}: a whole number") from None
        return cls(seed=seed, **rates)
