"""TCP/IP PROFILE and TCPIP.DATA: the addresses that matter on Wazi aaS, with their lines.

PROFILE (z/OS Communications Server IP Configuration Reference): free format, a semicolon
starts a comment up to the end of the record, statements may continue over records, keywords
are case-insensitive. What is read here: HOME entries (``address link`` pairs), INTERFACE
``IPADDR`` addresses, PRIMARYINTERFACE, default routes in ``BEGINRoutes``/``ENDRoutes``
(``ROUTE DEFAULT`` or ``ROUTE 0.0.0.0/0``) and in the older ``GATEWAY`` statement
(``DEFAULTNET`` entries), and INCLUDE (whose members are not read).

TCPIP.DATA: one statement per record, ``;`` comments (and ``#`` ones, as in resolv.conf), an
optional ``SYSNAME:`` prefix; NSINTERADDR or its synonym NAMESERVER name the name servers.

Pure: text in, structures out.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from zimage.ebcdic import split_records

# Statements that may start a PROFILE record; a record starting with anything else continues
# the statement before it (HOME entries, GATEWAY entries, PORT lists, ...).
PROFILE_STATEMENTS = frozenset(
    {
        "ARPAGE", "ATMARPSV", "ATMLIS", "ATMPVC", "AUTOLOG", "ENDAUTOLOG", "BEGINROUTES", "ENDROUTES",
        "BSDROUTINGPARMS", "ENDBSDROUTINGPARMS", "DELETE", "DEVICE", "GATEWAY", "GLOBALCONFIG",
        "HOME", "INCLUDE", "INTERFACE", "IPCONFIG", "IPCONFIG6", "IPSEC", "ENDIPSEC", "ITRACE",
        "LINK", "NETACCESS", "ENDNETACCESS", "NETMONITOR", "PKTTRACE", "PORT", "PORTRANGE",
        "PRIMARYINTERFACE", "SACONFIG", "SMFCONFIG", "SMFPARMS", "SOMAXCONN", "SRCIP", "ENDSRCIP",
        "START", "STOP", "TCPCONFIG", "TRANSLATE", "UDPCONFIG", "VIPADYNAMIC", "ENDVIPADYNAMIC",
    }
)  # fmt: skip

_SYMBOL_REF = re.compile(r"&([A-Z@#$][A-Z0-9@#$_]*)\.?\Z", re.IGNORECASE)


@dataclass(frozen=True)
class Token:
    text: str
    line: int  # 1-based
    column: int  # 0-based

    @property
    def upper(self) -> str:
        return self.text.upper()


@dataclass(frozen=True)
class Address:
    """An address operand: a literal, a symbol reference, or something else (e.g. '=')."""

    token: Token
    text: str  # the address part (a '/prefix' suffix removed)

    @property
    def symbol(self) -> str | None:
        """The referenced symbol name as written, when the operand is ``&NAME`` or ``&NAME.``."""
        match = _SYMBOL_REF.match(self.text)
        return match.group(1) if match else None

    @property
    def is_literal(self) -> bool:
        try:
            ipaddress.ip_address(self.text)
        except ValueError:
            return False
        return True

    @property
    def line(self) -> int:
        return self.token.line


def address(token: Token) -> Address:
    return Address(token, token.text.split("/", 1)[0])


def _address_like(token: Token) -> bool:
    a = address(token)
    return a.is_literal or a.text.startswith("&")


@dataclass(frozen=True)
class HomeEntry:
    address: Address
    link: str | None
    statement: str  # HOME | INTERFACE


@dataclass(frozen=True)
class DefaultRoute:
    gateway: Address | None  # None when the entry ends before its first hop
    link: str | None
    statement: str  # BEGINROUTES | GATEWAY
    line: int


@dataclass(frozen=True)
class Note:
    line: int
    message: str


@dataclass
class Profile:
    home: list[HomeEntry] = field(default_factory=list)
    default_routes: list[DefaultRoute] = field(default_factory=list)
    primary_interface: Token | None = None
    includes: list[Token] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)  # things that look wrong, not fatal

    def primary(self) -> HomeEntry | None:
        """The primary link's HOME entry: PRIMARYINTERFACE's, else the first HOME entry."""
        if self.primary_interface is not None:
            wanted = self.primary_interface.upper
            for entry in self.home:
                if entry.link is not None and entry.link.upper() == wanted:
                    return entry
        in_home = [e for e in self.home if e.statement == "HOME"]
        return (in_home or self.home or [None])[0]


def _tokens(text: str, comment_chars: str, hash_comments: bool = False) -> list[list[Token]]:
    """Tokens of each record (comments removed), one list per record."""
    out: list[list[Token]] = []
    for index, record in enumerate(split_records(text)):
        line = record.text
        cut = len(line)
        for i, char in enumerate(line):
            if char in comment_chars or (hash_comments and char == "#" and (i == 0 or line[i - 1].isspace())):
                cut = i
                break
        out.append([Token(m.group(), index + 1, m.start()) for m in re.finditer(r"\S+", line[:cut])])
    return out


def _statements(records: list[list[Token]]) -> list[list[list[Token]]]:
    """Group records into statements: each statement is its records' token lists."""
    statements: list[list[list[Token]]] = []
    for tokens in records:
        if not tokens:
            continue
        if tokens[0].upper in PROFILE_STATEMENTS or not statements:
            statements.append([tokens])
        else:
            statements[-1].append(tokens)
    return statements


def parse_profile(text: str) -> Profile:
    profile = Profile()
    for statement in _statements(_tokens(text, ";")):
        keyword = statement[0][0].upper
        flat = [t for line in statement for t in line]
        if keyword == "BEGINROUTES":  # ROUTE records continue it up to ENDROUTES
            _routes(profile, flat[1:])
        elif keyword == "HOME":
            _home(profile, flat[1:])
        elif keyword == "INTERFACE":
            _interface(profile, flat)
        elif keyword == "GATEWAY":
            _gateway(profile, statement)
        elif keyword == "PRIMARYINTERFACE" and len(flat) > 1:
            profile.primary_interface = flat[1]
        elif keyword == "INCLUDE" and len(flat) > 1:
            profile.includes.append(flat[1])
    return profile


def _home(profile: Profile, tokens: list[Token]) -> None:
    i = 0
    while i < len(tokens) and _address_like(tokens[i]):
        link = tokens[i + 1].text if i + 1 < len(tokens) else None
        if link is None:
            profile.notes.append(Note(tokens[i].line, f"HOME entry {tokens[i].text} has no link name"))
        profile.home.append(HomeEntry(address(tokens[i]), link, "HOME"))
        i += 2
    if i < len(tokens):
        profile.notes.append(
            Note(tokens[i].line, f"HOME list stops at {tokens[i].text!r}: it is not an address")
        )


def _interface(profile: Profile, tokens: list[Token]) -> None:
    words = [t.upper for t in tokens]
    if "DEFINE" not in words or "IPADDR" not in words:
        return
    kind = words[words.index("DEFINE") + 1] if words.index("DEFINE") + 1 < len(words) else ""
    if kind.endswith("6"):  # IPAQENET6 and friends carry IPv6 addresses
        return
    at = words.index("IPADDR")
    if at + 1 < len(tokens):
        name = tokens[1].text if len(tokens) > 1 else None
        profile.home.append(HomeEntry(address(tokens[at + 1]), name, "INTERFACE"))


def _routes(profile: Profile, tokens: list[Token]) -> None:
    starts = [i for i, t in enumerate(tokens) if t.upper == "ROUTE"]
    for n, start in enumerate(starts):
        entry = tokens[start : starts[n + 1] if n + 1 < len(starts) else len(tokens)]
        words = [t.upper for t in entry]
        if len(words) < 2:
            continue
        hop_at: int | None = None
        if words[1] == "DEFAULT" or words[1] == "0.0.0.0/0":
            hop_at = 2
        elif words[1] == "0.0.0.0" and len(words) > 2 and words[2] == "0.0.0.0":
            hop_at = 3  # destination with an explicit all-zero mask
        if hop_at is None:
            continue
        gateway = address(entry[hop_at]) if hop_at < len(entry) else None
        link = entry[hop_at + 1].text if hop_at + 1 < len(entry) else None
        profile.default_routes.append(DefaultRoute(gateway, link, "BEGINROUTES", entry[0].line))


def _gateway(profile: Profile, statement: list[list[Token]]) -> None:
    # Entries are one per record: network first_hop link_name packet_size [mask [value]].
    for number, line in enumerate(statement):
        entry = line[1:] if number == 0 else line
        if entry and entry[0].upper == "DEFAULTNET":
            gateway = address(entry[1]) if len(entry) > 1 else None
            link = entry[2].text if len(entry) > 2 else None
            profile.default_routes.append(DefaultRoute(gateway, link, "GATEWAY", entry[0].line))


@dataclass(frozen=True)
class NameServer:
    address: Address
    keyword: str  # NSINTERADDR | NAMESERVER as written
    system: str | None  # the SYSNAME: prefix, when present


@dataclass
class TcpData:
    name_servers: list[NameServer] = field(default_factory=list)


def parse_tcpdata(text: str) -> TcpData:
    data = TcpData()
    for tokens in _tokens(text, ";", hash_comments=True):
        system = None
        if tokens and tokens[0].text.endswith(":"):
            system, tokens = tokens[0].text[:-1], tokens[1:]
        if tokens and tokens[0].upper in ("NSINTERADDR", "NAMESERVER"):
            for token in tokens[1:]:
                data.name_servers.append(NameServer(address(token), tokens[0].text, system))
    return data
