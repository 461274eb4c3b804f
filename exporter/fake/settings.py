"""What kind of Rocket.Chat server the fake plays: two separate axes plus one switch.

- ``model``: the era of the livechat route files and MongoDB model code (E1 to E5), which decides
  query validation, where permissions are checked and the exact row shapes;
- ``framework``: the REST framework around every route (Restivus in JavaScript, Restivus in
  TypeScript, or the Hono-based ``ApiClass``), which decides the order of checks and the bodies
  of 401s and login answers;
- ``breaking_9``: the error bodies gated on ``shouldBreakInVersion('9.0.0')``, off on every
  released server.

A released server pairs one framework with one model era; several model eras shipped under each
framework, so no pairing is refused. docs/fake.md lists each setting with its sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

ModelEra: TypeAlias = Literal["E1", "E2", "E3", "E4", "E5"]
"""Code eras of docs/rocketchat-api.md, "Versions and eras"."""

Framework: TypeAlias = Literal["restivus-js", "restivus-ts", "hono"]

MODEL_ERAS: tuple[ModelEra, ...] = ("E1", "E2", "E3", "E4", "E5")
FRAMEWORKS: tuple[Framework, ...] = ("restivus-js", "restivus-ts", "hono")


@dataclass
class ServerSettings:
    """Server behaviour; tests may change any field while the fake runs.

    The defaults are the newest released behaviour: Hono, the E5 model, 8.x bodies.
    """

    model: ModelEra = "E5"
    framework: Framework = "hono"
    breaking_9: bool = False  # 9.0 error bodies; only the Hono framework has the switch
    default_count: int = 50  # API_Default_Count
    upper_count_limit: int = 100  # API_Upper_Count_Limit
    allow_infinite_count: bool = True  # API_Allow_Infinite_Count
    rate_limit_calls: int = 10  # per endpoint+method, per client IP; 0 turns the limiter off
    rate_limit_window_ms: int = 60_000
    total_skew: int = 0  # added to livechat/queue `total`: the E5 page/total race
    latency: float = 0.0  # seconds to wait before answering any request

    def __post_init__(self) -> None:
        if self.model not in MODEL_ERAS or self.framework not in FRAMEWORKS:
            raise ValueError(f"no such server: model {self.model!r}, framework {self.framework!r}")

    @property
    def hono(self) -> bool:
        return self.framework == "hono"

    @property
    def breaking(self) -> bool:
        return self.hono and self.breaking_9

    @property
    def js_model(self) -> bool:
        """E1/E2: JavaScript routes without a query schema, and ``$ifNull`` row shapes."""
        return self.model in ("E1", "E2")

    @property
    def facet_agents(self) -> bool:
        """E3 on: ``Users.findAgentsWithDepartments``, whose ``$facet`` breaks on count=0."""
        return not self.js_model
