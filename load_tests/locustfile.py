"""Locust traffic for the query service: what a day of real callers looks like.

- hot queries: a Zipf distribution over 300 real branch names, each written with noise (aliases, OCR
  spaces, traditional characters, English boilerplate) — most should be cache hits;
- cold queries: unique noisy names from the whole directory — the rules path and PostgreSQL;
- adapter traffic: 70 % ``job_22``, 30 % ``job_23`` — the model path, multiplexed;
- base traffic: plain queries without a model.

Set ``LOAD_SHAPE=step`` for a staircase from 1 user to ``MAX_USERS`` (doubling every ``STEP_SECONDS``)
and back down, for autoscaling runs; otherwise Locust's own ``--users/--spawn-rate`` apply.
"""

from __future__ import annotations

import os
import random
import uuid

import opencc
from locust import HttpUser, LoadTestShape, between, task

from serve_app.directory.banks import ALIASES
from serve_app.directory.records import demo_cnaps_path, read_cnaps

_S2T = opencc.OpenCC("s2t")
_NAMES = [record.name for record in read_cnaps(demo_cnaps_path())]
_RANDOM = random.Random(42)
_HOT = _RANDOM.sample(_NAMES, 300)
_ZIPF_WEIGHTS = [1 / rank for rank in range(1, len(_HOT) + 1)]


def noisy(name: str, rng: random.Random) -> str:
    """One of the ways people write a branch name."""
    choice = rng.randrange(5)
    if choice == 0:
        for bank, aliases in ALIASES.items():
            if name.startswith(bank):
                return rng.choice(aliases) + name[len(bank) :].replace("股份有限公司", "")
        return name
    if choice == 1:
        cut = rng.randrange(1, len(name))
        return name[:cut] + " " + name[cut:]
    if choice == 2:
        return _S2T.convert(name)
    if choice == 3:
        return "THE PEOPLE'S BANK OF CHINA " + name
    return name.replace("股份有限公司", "")


_HOT_TEXTS = [noisy(name, _RANDOM) for name in _HOT]


class BranchQueryUser(HttpUser):
    wait_time = between(0.05, 0.2)

    def on_start(self) -> None:
        # Against a service with ``auth: keys``, every simulated caller uses the tenant key in SERVE_APP_API_KEY
        # (one tenant, one rate limit: size it with `serve-app keys create --rate`). In open mode the callers
        # share this machine's address and so its rate limit.
        key = os.environ.get("SERVE_APP_API_KEY")
        if key:
            self.client.headers["x-api-key"] = key

    def _query(self, body: dict, name: str) -> None:
        with self.client.post("/api/v1/query", json=body, name=name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")
            elif "matches" not in response.json():
                response.failure("no matches field")

    @task(5)
    def hot(self) -> None:
        text = random.choices(_HOT_TEXTS, weights=_ZIPF_WEIGHTS)[0]
        self._query({"query": text}, "hot")

    @task(3)
    def cold(self) -> None:
        self._query({"query": noisy(random.choice(_NAMES), random) + uuid.uuid4().hex[:4]}, "cold")

    @task(1)
    def base(self) -> None:
        self._query({"query": random.choice(_NAMES), "top_k": 3}, "base")

    @task(2)
    def adapter(self) -> None:
        model = "job_22" if random.random() < 0.7 else "job_23"
        self._query({"query": noisy(random.choice(_NAMES), random), "model": model}, f"model:{model}")


if os.environ.get("LOAD_SHAPE") == "step":

    class StepLoadShape(LoadTestShape):
        """1, 2, 4, … MAX_USERS users, STEP_SECONDS each, then back down the same stairs."""

        max_users = int(os.environ.get("MAX_USERS", "32"))
        step_seconds = int(os.environ.get("STEP_SECONDS", "30"))

        def __init__(self) -> None:
            super().__init__()
            up = [2**i for i in range(self.max_users.bit_length()) if 2**i <= self.max_users]
            self.steps = up + up[-2::-1]

        def tick(self):
            step = int(self.get_run_time() // self.step_seconds)
            if step >= len(self.steps):
                return None
            users = self.steps[step]
            return users, users
