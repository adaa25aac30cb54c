"""KooGallery's compact times: `yyyyMMddHHmmss`, or `yyyyMMddHHmmssSSS` with milliseconds, always
UTC (spec §2.7, §4.5, §5.1). One parser for every place that reads them: the inbound fields, V1
timestamps, Query Order answers and licence-code answers."""

from datetime import UTC, datetime, timedelta, timezone


def compact_time(text: str, *, millis: bool = True) -> datetime | None:
    """`text` as an aware UTC datetime, with its milliseconds unless `millis` is False; None for
    anything but 14 or 17 ASCII digits naming a real moment. What `strptime(text[:14],
    "%Y%m%d%H%M%S")` gives, without its cost (it is on several calls' path)."""
    if len(text) not in (14, 17) or not (text.isascii() and text.isdigit()):
        return None
    try:
        return datetime(
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[8:10]),
            int(text[10:12]),
            int(text[12:14]),
            int(text[14:] or 0) * 1000 if millis else 0,
            tzinfo=UTC,
        )
    except ValueError:
        return None


# Kit calls carry their own time in the body, in China Standard Time (spec §4.1); it orders
# the changes they make to one entity (§2.3 "Replays and late calls").
KIT_ZONE = timezone(timedelta(hours=8), "UTC+08:00")
KIT_TIME_FORMAT = "yyyyMMddHHmmssSSS (UTC+8)"


def kit_time(text: str) -> datetime | None:
    """A kit `timeStamp`/`currentSyncTime` (17 digits, UTC+8, §4.1) as an aware datetime;
    None for anything else."""
    if len(text) != 17:
        return None
    moment = compact_time(text)
    return None if moment is None else moment.replace(tzinfo=KIT_ZONE)
