"""What every session holds: the database, one engine, and the machine its plans are for."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Generic, TypeVar

from sqlite_utils import Database

from app.hardware.profile import HardwareProfile

Engine = TypeVar("Engine")


class Session(ABC, Generic[Engine]):
    """The parts a chat or an image session shares; each names the engine it starts."""

    def __init__(
        self, db: Database, *, client: Engine | None = None, hardware: HardwareProfile | None = None
    ) -> None:
        self.db = db
        self.client: Engine = client or self.default_client()
        self._hardware = hardware

    @abstractmethod
    def default_client(self) -> Engine:
        """The engine used when none is given (its worker process starts on first use)."""

    @property
    def hardware(self) -> HardwareProfile:
        """The profile given, or this machine's, detected on first use (it takes a moment)."""
        if self._hardware is None:
            from app.hardware.detect import this_machine

            self._hardware = this_machine()
        return self._hardware
