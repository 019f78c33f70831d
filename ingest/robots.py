"""robots.txt rules as RFC 9309 reads them: groups per user agent, `*` and `$`, longest match wins.

The standard library's urllib.robotparser applies the first matching line and knows no
wildcards, so `Disallow: /` followed by `Allow: /news/` would block /news/ there; sites write
their files for the RFC reading (Google's), so that is the one implemented here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit


@dataclass(frozen=True)
class _Rule:
    allow: bool
    path: str
    pattern: re.Pattern


@dataclass(frozen=True)
class Robots:
    """The rules of one robots.txt that apply to one user agent."""

    rules: tuple[_Rule, ...] = ()

    def allows(self, url: str) -> bool:
        """Whether `url` (absolute, or path plus query) may be fetched."""
        parts = urlsplit(url)
        target = _normalise(parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if target == "/robots.txt":
            return True
        best: _Rule | None = None
        for rule in self.rules:
            if rule.pattern.match(target) and (best is None or _beats(rule, best)):
                best = rule
        return best is None or best.allow


ALLOW_ALL = Robots()


def product_token(user_agent: str) -> str:
    """The name robots.txt groups address: 'newsmon' for 'newsmon/0.1 (+https://...)'."""
    return re.split(r"[/\s]", user_agent.strip(), maxsplit=1)[0].lower()


def parse(text: str, user_agent: str) -> Robots:
    """The rules in `text` for `user_agent`: its own groups if any, else the `*` groups."""
    groups = _groups(text)
    token = product_token(user_agent)
    mine = [rules for agents, rules in groups if token in agents]
    if not mine:
        mine = [rules for agents, rules in groups if "*" in agents]
    return Robots(tuple(rule for rules in mine for rule in rules))


def _groups(text: str) -> list[tuple[set[str], list[_Rule]]]:
    """(agents, rules) for each group; consecutive user-agent lines share one group."""
    groups: list[tuple[set[str], list[_Rule]]] = []
    in_agents = False
    for line in text.splitlines():
        key, _, value = line.split("#", 1)[0].partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "user-agent":
            if not in_agents:
                groups.append((set(), []))
            groups[-1][0].add(product_token(value) if value != "*" else "*")
            in_agents = True
        elif key in ("allow", "disallow") and groups:
            in_agents = False
            if value:  # an empty Disallow allows everything: it adds no rule
                groups[-1][1].append(_rule(key == "allow", value))
        elif key:
            in_agents = False  # sitemap, crawl-delay, ... end the run of user-agent lines
    return groups


def _rule(allow: bool, path: str) -> _Rule:
    """A rule whose pattern matches from the start of the path; `*` any run, `$` the end."""
    path = _normalise(path)
    anchored = path.endswith("$")
    body = path[:-1] if anchored else path
    regex = ".*".join(re.escape(piece) for piece in body.split("*"))
    return _Rule(allow, path, re.compile(regex + ("$" if anchored else ""), re.DOTALL))


def _beats(rule: _Rule, best: _Rule) -> bool:
    """The more specific (longer) rule wins; on a tie, allow wins (RFC 9309 2.2.2)."""
    if len(rule.path) != len(best.path):
        return len(rule.path) > len(best.path)
    return rule.allow and not best.allow


def _normalise(path: str) -> str:
    """Percent-encode the same way on both sides so /caf%C3%A9 and /café compare equal."""
    return quote(unquote(path), safe="/*$?=&;:@!,'()+~-._")
