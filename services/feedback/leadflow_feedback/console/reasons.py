"""What the console says about routing: why a lead would go where a dry run sends it, and a
countdown's words. Pure: plain data in, sentences out."""

from __future__ import annotations

from typing import Any

# What routing's trace calls a rep passed over, in people's words.
SKIPPED = {
    "inactive": "inactive",
    "out_of_office": "out of office",
    "outside_working_hours": "outside working hours",
    "at_capacity": "at capacity",
    "reassigned_from": "the rep it is taken from",
    "not_in_team": "not in the team",
}


def why_routed(result: dict[str, Any]) -> str:
    """One sentence on a dry run's decision: the team and rep, and because of what."""
    trace = result.get("trace") or {}
    considered = trace.get("considered") or []
    chosen = next((c for c in considered if c.get("chosen")), None)
    if chosen is None and result.get("rep_id"):
        chosen = next((c for c in considered if c.get("rep_id") == result["rep_id"]), None)
    who = chosen["name"] if chosen else "no rep (it would wait in the unassigned queue)"
    account = trace.get("account") or {}
    if trace.get("strategy") == "account_owner":
        cause = f"its company {account.get('domain')} is an account its owner keeps"
    elif trace.get("rule"):
        cause = f"the rule “{trace['rule']}” matches it"
        tried = [t["rule"] for t in trace.get("rules_tried", []) if not t.get("matched")]
        if tried:
            cause += f" (rules tried before: {', '.join(tried)})"
    else:
        cause = "no rule matches it, so it goes to the fallback team"
    passed = [
        f"{c.get('name')} ({SKIPPED.get(c['skipped'], c['skipped'])})"
        for c in considered
        if c.get("skipped")
    ]
    sentence = f"This lead would go to {who} in {result.get('team')} because {cause}"
    if trace.get("strategy") and trace.get("strategy") != "account_owner":
        sentence += f"; the team picks by {str(trace['strategy']).replace('_', ' ')}"
    if passed:
        sentence += f"; passed over: {', '.join(passed)}"
    return sentence + "."


def countdown(seconds: float | None) -> str:
    """`2h 05m 09s` left, or `late 3m 02s`; empty without a clock."""
    if seconds is None:
        return ""
    late = seconds < 0
    total = int(abs(seconds))
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    words = f"{hours}h {minutes:02d}m {secs:02d}s"
    if days:
        words = f"{days}d {words}"
    return f"late {words}" if late else words


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def span(text: str) -> tuple[str, str] | None:
    """`09:00-17:00` as (start, end); None when empty. ValueError names the expected form."""
    text = text.strip()
    if not text:
        return None
    start, sep, end = text.partition("-")
    if not sep or len(start.strip()) != 5 or len(end.strip()) != 5:
        raise ValueError("hours are written as HH:MM-HH:MM, e.g. 09:00-17:00")
    return start.strip(), end.strip()


def values(text: str) -> list[str] | dict[str, Any]:
    """A rule condition as typed: `PL, DE` (any of), `50-1000` (a range of a number field),
    `not gov` (anything but)."""
    text = text.strip()
    if text.lower().startswith("not "):
        inner = values(text[4:])
        return {"not": inner if isinstance(inner, dict) else {"in": inner}}
    low, sep, high = text.partition("-")
    if sep and low.strip().isdigit() and high.strip().isdigit():
        return {"min": int(low), "max": int(high)}
    if text.endswith("+") and text[:-1].strip().isdigit():
        return {"min": int(text[:-1])}
    return [v.strip() for v in text.split(",") if v.strip()]
