"""An MCP3008 ADC on the simulator's SPI pins, for the battery voltage.

gpiozero's MockFactory talks software SPI over mock pins (SCLK 11, MOSI 10,
MISO 9, CE0 8); this MockSPIDevice answers MCP3008 conversions with the
voltages in `channels` (volts at the ADC input), as the real chip would.
Create it before trapd opens its MCP3008, with `Device.pin_factory` set to the
same MockFactory: gpiozero builds its software-SPI fallback on the default factory.
"""

from __future__ import annotations

from gpiozero.pins.mock import MockSPIDevice


class MockMCP3008(MockSPIDevice):
    BITS = 10

    def __init__(self, pin_factory, vref: float = 3.3) -> None:
        super().__init__(11, 10, 9, 8, pin_factory=pin_factory)
        self.vref = vref
        self.channels = [0.0] * 8
        self._state = "idle"

    def set_battery(self, channel: int, battery_v: float, divider: float) -> None:
        self.channels[channel] = battery_v / divider

    def on_start(self):
        super().on_start()
        self._state = "idle"

    def on_bit(self):
        # start bit, single/differential bit, 3 channel bits, then the result
        if self._state == "idle":
            if self.rx_buf[-1]:
                self._state, self.rx_buf = "mode", []
        elif self._state == "mode":
            self._state, self.rx_buf = ("single" if self.rx_buf[-1] else "diff"), []
        elif self._state in ("single", "diff"):
            if len(self.rx_buf) == 3:
                self._answer(self.rx_word())
                self._state = "result"
        elif self._state == "result" and not self.tx_buf:
            self._state, self.rx_buf = "idle", []

    def _answer(self, channel: int) -> None:
        volts = min(max(self.channels[channel], 0.0), self.vref)
        self.tx_word(round(volts / self.vref * (2 ** self.BITS - 1)), self.BITS + 2)
