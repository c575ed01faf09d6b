"""Operating windows by clock time or relative to sunrise/sunset (astral).

A window runs from `start` to `end` in the station's local time (config
`time.utc_offset`), on the listed weekdays (the day the window starts);
an end before the start means the window crosses midnight. Sun-relative
times are computed for the station's coordinates with astral (NOAA
algorithm, ~1 min accuracy). At polar latitudes where the sun does not rise
or set that day, a sun-relative window is closed that day.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from astral import Observer
from astral.sun import elevation, sunrise, sunset

from trapd.config import WEEKDAYS, Window, parse_time_of_day

NS = 1_000_000_000
ALWAYS = Window(start="00:00", end="00:00")


class Schedule:
    def __init__(self, windows: tuple[Window, ...], latitude: float, longitude: float,
                 tz: timezone) -> None:
        self.windows = windows
        self.tz = tz
        self._observer = Observer(latitude=latitude, longitude=longitude)

    def window_at(self, wall_ns: int) -> Window | None:
        """The window open at this instant (ALWAYS when none are configured), or None."""
        if not self.windows:
            return ALWAYS
        now = datetime.fromtimestamp(wall_ns / NS, self.tz)
        for window in self.windows:
            for day in (now.date() - timedelta(days=1), now.date()):
                span = self._span(window, day)
                if span and span[0] <= now < span[1]:
                    return window
        return None

    def is_night(self, wall_ns: int) -> bool:
        """Sun more than 6 degrees below the horizon (civil twilight over)."""
        when = datetime.fromtimestamp(wall_ns / NS, timezone.utc)
        return elevation(self._observer, when) < -6.0

    def _span(self, window: Window, day: date) -> tuple[datetime, datetime] | None:
        if WEEKDAYS[day.weekday()] not in window.days:
            return None
        start = self._moment(window.start, day)
        end = self._moment(window.end, day)
        if start is None or end is None:
            return None
        if end <= start:
            end = self._moment(window.end, day + timedelta(days=1))
            if end is None:
                return None
        return start, end

    def _moment(self, text: str, day: date) -> datetime | None:
        anchor, minutes = parse_time_of_day(text)
        midnight = datetime(day.year, day.month, day.day, tzinfo=self.tz)
        if anchor is None:
            return midnight + timedelta(minutes=minutes)
        try:
            sun = (sunrise if anchor == "sunrise" else sunset)(self._observer, day, tzinfo=self.tz)
        except ValueError:  # the sun does not rise or set that day
            return None
        return sun + timedelta(minutes=minutes)
