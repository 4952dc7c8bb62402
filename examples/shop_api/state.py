"""What the endpoints share: the shop connected by the application's lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import Depends, Request

from eventfold import Repository, Runner, Running


@dataclass(frozen=True, slots=True)
class Shop:
    """The connected App and the runner serving its subscribers."""

    running: Running
    runner: Runner

    @property
    def repository(self) -> Repository:
        """The write model's repository."""
        return self.running.repository


def current_shop(request: Request) -> Shop:
    """The connected shop of the application serving ``request`` (a FastAPI dependency)."""
    return cast(Shop, request.app.state.shop)


ShopDep = Annotated[Shop, Depends(current_shop)]
"""An endpoint parameter annotated so receives the connected shop."""
