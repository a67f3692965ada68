"""The IPL chain of an image, checked on its volumes (DESIGN.md §16). Pure: the facts come in, findings
and the members still to be read go out.

    evaluate(chain, volumes, members) -> Evaluation(findings, wanted, unreadable, steps)

`volumes` holds what the data mover listed for each volume (its data sets, or why it could not be
read), `members` the members read so far. A caller asks the mover for `wanted` and evaluates again
until nothing is wanted (at most a few rounds: LOADxx, then the parmlib members it leads to).

The chain: the IPL device holds the system residence volume; LOADPARM positions 1-4 name the IODF
device (default: the IPL device), 5-6 the LOADxx suffix (default 00). LOADxx is searched in
SYS0.IPLPARM ... SYS9.IPLPARM on the IODF volume, then SYS1.PARMLIB there, then SYS1.PARMLIB on the
IPL volume; the first that holds it is used. Its IODF, SYSCAT and PARMLIB statements must name data
sets on the image's volumes; its IEASYM suffixes (default 00) name members found in the parmlib
concatenation (the PARMLIB data sets in order, SYS1.PARMLIB last when not named). Those members,
and the TCP/IP PROFILE and TCPDATA the config names, get the checks of zimage.symbols.
Findings read `VOLSER:DSN(MEMBER):LINE: error|warning: message`.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

from zimage import loadparm, loadxx
from zimage.config import Config
from zimage.findings import Finding, Severity, sort_findings
from zimage.ieasym import parse_ieasym
from zimage.member_symbols import member_text
from zimage.symbols import WAZI_SYMBOLS, Member, check_ieasym, check_profile, check_tcpdata

IPLPARM = [f"SYS{n}.IPLPARM" for n in range(10)]
PARMLIB = "SYS1.PARMLIB"
NUCLEUS = "SYS1.NUCLEUS"
PDS, PDSE = "PO", "PO-E"
_MEMBER_SPEC = re.compile(r"^([A-Z0-9@#$.-]+)\(([A-Z0-9@#$]{1,8})\)$")
TCPIP_CHECKS = {"tcpip_profile": ("TCP/IP PROFILE", check_profile), "tcpdata": ("TCPDATA", check_tcpdata)}


class ChainInput(BaseModel):
    model_config = ConfigDict(frozen=True)

    image: str
    ipl_device: str
    loadparm: str
    volumes: dict[str, str]  # devnum -> volser, in the image's order
    tcpip: dict[str, str] = {}  # tcpip_profile / tcpdata -> DSN(MEMBER), as the source's parmlib names them


class MemberRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    volser: str
    dsn: str
    member: str

    @property
    def label(self) -> str:
        return f"{self.volser}:{self.dsn}({self.member})"


class VolumeListing(BaseModel):
    volser: str
    label: str | None = None
    error: str | None = None
    datasets: dict[str, str] = {}  # name -> DSORG (PO, PO-E, PS, VS ...)


class MemberRead(BaseModel):
    ref: MemberRef
    status: str  # found | absent | error
    records: list[bytes] = []
    message: str = ""


class Evaluation(BaseModel):
    findings: list[Finding]
    wanted: list[MemberRef]
    unreadable: bool  # a volume could not be read at all
    steps: list[str]  # what the chain resolved to, for reports
    ieasym: list[MemberRead] = []  # the IEASYMxx members the chain resolved to, in order (deploy-host rewrites them)


def _iodf_device(chain: ChainInput) -> str:
    """LOADPARM positions 1-4, or the IPL device when they are blank."""
    lp = loadparm.parse(chain.loadparm)
    return lp.iodf_devnum.rjust(4, "0") if lp.iodf_devnum else chain.ipl_device


def _loadxx_search(iodf: str, ipl: str) -> list[tuple[str, str]]:
    """(volser, data set) where LOADxx is looked for, in order."""
    return [(iodf, dsn) for dsn in [*IPLPARM, PARMLIB]] + ([(ipl, PARMLIB)] if ipl != iodf else [])


def first_guesses(chain: ChainInput) -> list[MemberRef]:
    """Members worth reading with the first listing, before the chain knows where they are: LOADxx
    wherever it may be and the TCP/IP members on every volume. Those whose data set is not there
    answer "absent" at no cost (the VTOC is read anyway), and a round trip is saved, which is a
    pass over the whole volume when the VTOC lies at its far end."""
    guesses = []
    iodf_device = _iodf_device(chain)
    if iodf_device in chain.volumes:
        name = f"LOAD{loadparm.parse(chain.loadparm).load_suffix.strip() or '00'}"
        search = _loadxx_search(chain.volumes[iodf_device], chain.volumes[chain.ipl_device])
        guesses += [MemberRef(volser=v, dsn=d, member=name) for v, d in search]
    for spec in chain.tcpip.values():
        if match := _MEMBER_SPEC.fullmatch(spec):
            guesses += [MemberRef(volser=v, dsn=match[1], member=match[2]) for v in chain.volumes.values()]
    return guesses


def _key(ref: MemberRef) -> tuple[str, str, str]:
    return ref.volser, ref.dsn, ref.member


class _Chain:
    def __init__(self, chain: ChainInput, volumes: dict[str, VolumeListing], members: dict[tuple, MemberRead]):
        self.chain = chain
        self.volumes = volumes
        self.members = members
        self.findings: list[Finding] = []
        self.wanted: list[MemberRef] = []
        self.steps: list[str] = []
        self.unreadable = False
        self.ieasym_members: list[MemberRead] = []
        self.volsers = list(chain.volumes.values())

    def add(self, file: str, line: int, severity: Severity, message: str) -> None:
        self.findings.append(Finding(file=file, line=max(1, line), severity=severity, message=message))

    def readable(self, volser: str) -> bool:
        listing = self.volumes.get(volser)
        return listing is not None and listing.error is None

    def holders(self, dsn: str, first: str | None = None) -> list[str]:
        """Volumes of the image holding `dsn` (`first` before the others)."""
        order = ([first] if first else []) + [v for v in self.volsers if v != first]
        return [v for v in order if self.readable(v) and dsn in self.volumes[v].datasets]

    def read(self, ref: MemberRef) -> MemberRead | None:
        """The member when it has been read; otherwise it is asked for and None is returned."""
        got = self.members.get(_key(ref))
        if got is None and ref not in self.wanted:
            self.wanted.append(ref)
        return got

    # --- the chain ---------------------------------------------------------------------------

    def run(self) -> None:
        self.check_volumes()
        ipl = self.chain.volumes[self.chain.ipl_device]
        where = f"{self.chain.image}:LOADPARM {self.chain.loadparm}"
        lp = loadparm.parse(self.chain.loadparm)
        iodf_device = _iodf_device(self.chain)
        if iodf_device not in self.chain.volumes:
            known = ", ".join(f"{d} ({v})" for d, v in self.chain.volumes.items())
            self.add(
                where,
                1,
                "error",
                f"positions 1-4 name IODF device {iodf_device}, which is not a volume of "
                f"image {self.chain.image} (its devices: {known}); the IPL would not find LOADxx",
            )
            return
        if not self.readable(ipl) or not self.readable(self.chain.volumes[iodf_device]):
            return
        if NUCLEUS not in self.volumes[ipl].datasets:
            self.add(
                f"{ipl}:VTOC",
                1,
                "warning",
                f"IPL device {self.chain.ipl_device} (volume {ipl}) holds no "
                f"{NUCLEUS}: it does not look like a system residence volume",
            )
        iodf = self.chain.volumes[iodf_device]
        suffix = lp.load_suffix.strip() or "00"
        found = self.find_loadxx(iodf, ipl, f"LOAD{suffix}", iodf_device)
        if found is None:
            return
        ref, records = found
        self.steps.append(f"LOAD{suffix}: {ref.label} (IODF device {iodf_device})")
        self.follow(ref, member_text(records), iodf, ipl)

    def check_volumes(self) -> None:
        for volser in self.volsers:
            listing = self.volumes.get(volser)
            if listing is None:
                continue
            if listing.error:
                self.unreadable = True
                self.add(f"{volser}:VTOC", 1, "error", listing.error)
            elif listing.label and listing.label != volser:
                self.add(
                    f"{volser}:VTOC", 1, "error", f"the VOL1 label names {listing.label}, the image names {volser}"
                )

    def first_found(self, refs: list[MemberRef]) -> tuple[bool, tuple[MemberRef, list[bytes]] | None]:
        """(pending, the first of `refs` that holds the member): those not read yet are asked for at once."""
        pending = False
        for ref in refs:
            got = self.read(ref)
            if got is None:
                pending = True
            elif got.status == "found":
                return pending, None if pending else (ref, got.records)
            elif got.status == "error":
                self.add(ref.label, 1, "error", got.message)
        return pending, None

    def find_loadxx(self, iodf: str, ipl: str, name: str, device: str) -> tuple[MemberRef, list[bytes]] | None:
        candidates = _loadxx_search(iodf, ipl)
        refs = []
        for volser, dsn in candidates:
            dsorg = self.volumes[volser].datasets.get(dsn)
            if dsorg is None:
                continue
            file = f"{volser}:{dsn}"
            if dsorg == PDSE:
                self.add(
                    file,
                    1,
                    "error",
                    f"{dsn} is a PDSE where a PDS is needed: the IPL reads {name} only "
                    "from a PDS (and its members cannot be read from a volume image)",
                )
            elif dsorg != PDS:
                self.add(file, 1, "error", f"{dsn} is not a partitioned data set (DSORG {dsorg or 'not set'})")
            else:
                refs.append(MemberRef(volser=volser, dsn=dsn, member=name))
        pending, hit = self.first_found(refs)
        if pending or hit:
            return hit
        searched = f"SYS0.IPLPARM-SYS9.IPLPARM and {PARMLIB} on the IODF volume {iodf} (device {device})"
        if ipl != iodf:
            searched += f", then {PARMLIB} on the IPL volume {ipl}"
        self.add(
            f"{iodf}:SYS0.IPLPARM({name})",
            1,
            "error",
            f"{name} is missing: it is in none of {searched}; "
            "the IPL cannot go on without it (check LOADPARM positions 5-6)",
        )
        return None

    def follow(self, ref: MemberRef, text: str, iodf: str, ipl: str) -> None:
        member = loadxx.parse_loadxx(text)
        file = ref.label
        for line, severity, message in member.problems:
            self.add(file, line, severity, message)
        for keyword in ("IODF", "SYSCAT", "PARMLIB", "IEASYM"):
            for st in member.filtered(keyword):
                self.add(
                    file,
                    st.line,
                    "warning",
                    f"{keyword} applies only under {' '.join(st.filters)}; the "
                    "target's names may not match, so it is not followed here",
                )
        self.check_iodf(member, file, iodf)
        self.check_syscat(member, file)
        concatenation = self.concatenation(member, file, ipl)
        self.ieasym(member, file, concatenation)

    def check_iodf(self, member: loadxx.LoadMember, file: str, iodf_volser: str) -> None:
        statements = member.unfiltered("IODF")
        if not statements:
            self.add(file, 1, "warning", "no IODF statement: the IODF data set is not checked")
            return
        st = statements[-1]
        spec = loadxx.iodf(st)
        names = self.volumes[iodf_volser].datasets
        if re.fullmatch(r"[0-9A-F]{2}", spec.suffix):
            wanted = f"{spec.hlq}.IODF{spec.suffix}"
            hits = [n for n in names if n == wanted or n.startswith(wanted + ".")]
        else:
            wanted = f"{spec.hlq}.IODFxx"
            hits = [n for n in names if re.fullmatch(rf"{re.escape(spec.hlq)}\.IODF[0-9A-F]{{2}}(\..*)?", n)]
        if not hits:
            self.add(
                file,
                st.line,
                "error",
                f"IODF {spec.suffix} {spec.hlq}: data set {wanted} is absent from the IODF volume {iodf_volser}",
            )
        else:
            self.steps.append(f"IODF: {iodf_volser}:{hits[0]}")

    def check_syscat(self, member: loadxx.LoadMember, file: str) -> None:
        for st in member.unfiltered("SYSCAT")[-1:]:
            volser, catalog = loadxx.syscat(st)
            if volser not in self.volsers:
                self.add(
                    file,
                    st.line,
                    "error",
                    f"SYSCAT: the master catalog {catalog} is on volume {volser}, which the image does not contain",
                )
            elif self.readable(volser) and not any(
                n == catalog or n.startswith(catalog + ".") for n in self.volumes[volser].datasets
            ):
                self.add(file, st.line, "warning", f"SYSCAT: no data set {catalog} in the VTOC of {volser}")
            else:
                self.steps.append(f"SYSCAT: {volser}:{catalog}")

    def concatenation(self, member: loadxx.LoadMember, file: str, ipl: str) -> list[tuple[str, str]]:
        """(volser, dsn) of each readable parmlib data set, in order; SYS1.PARMLIB last when not named."""
        out: list[tuple[str, str]] = []
        statements = member.unfiltered("PARMLIB")
        named = [(*loadxx.parmlib(st), st.line) for st in statements]
        if not any(dsn == PARMLIB for dsn, _, _ in named):
            named.append((PARMLIB, None, 0))
        for dsn, volser, line in named:
            if volser is not None and volser not in self.volsers:
                self.add(
                    file,
                    line,
                    "error",
                    f"PARMLIB {dsn} is on volume {volser}, which the image does not "
                    f"contain (its volumes: {', '.join(self.volsers)})",
                )
                continue
            if volser is not None:
                if not self.readable(volser):
                    continue  # reported with the volume
                holders = [volser] if dsn in self.volumes[volser].datasets else []
            else:
                holders = self.holders(dsn, ipl)
            if not holders:
                on = f"volume {volser}" if volser else "any volume of the image"
                why = "" if line else " (the system adds it at the end of the concatenation)"
                self.add(file, line, "error", f"PARMLIB {dsn}{why} is not on {on}")
                continue
            if len(holders) > 1:
                self.add(
                    file,
                    line,
                    "warning",
                    f"PARMLIB {dsn} is on volumes {', '.join(holders)}: the master "
                    f"catalog decides which one the IPL uses (not read here); {holders[0]} was checked, name the "
                    "volume in LOADxx (columns 55-60) to be sure",
                )
            dsorg = self.volumes[holders[0]].datasets[dsn]
            if dsorg == PDSE:
                self.add(
                    f"{holders[0]}:{dsn}",
                    1,
                    "warning",
                    f"{dsn} is a PDSE: its members cannot be read from a "
                    "volume image, so the IEASYMxx members in it are not checked",
                )
                continue
            if dsorg != PDS:
                self.add(file, line, "error", f"PARMLIB {dsn} on {holders[0]} is not partitioned (DSORG {dsorg})")
                continue
            out.append((holders[0], dsn))
        self.steps.append("parmlib: " + ", ".join(f"{v}:{d}" for v, d in out))
        return out

    def ieasym(self, member: loadxx.LoadMember, file: str, concatenation: list[tuple[str, str]]) -> None:
        suffixes: list[tuple[str, int]] = []
        for st in member.unfiltered("IEASYM"):
            found, problems = loadxx.ieasym_suffixes(st)
            for problem in problems:
                self.add(file, st.line, "error", problem)
            suffixes += [(s, st.line) for s in found]
        if not member.unfiltered("IEASYM"):
            suffixes = [("00", 0)]
        read: list[tuple[MemberRef, list[bytes]]] = []
        pending = False
        for suffix, line in dict.fromkeys(suffixes):
            name = f"IEASYM{suffix}"
            waiting, hit = self.first_found([MemberRef(volser=v, dsn=d, member=name) for v, d in concatenation])
            if waiting:
                pending = True
            elif hit is None:
                where = ", ".join(f"{v}:{d}" for v, d in concatenation) or "(no readable parmlib data set)"
                if line:
                    self.add(
                        file,
                        line,
                        "error",
                        f"IEASYM suffix {suffix}: member {name} is in none of the parmlib data sets {where}",
                    )
                else:  # without an IEASYM statement only IEASYM00 is looked for
                    self.add(
                        file,
                        1,
                        "warning",
                        f"LOADxx has no IEASYM statement and {name} is in none of the parmlib data sets {where}",
                    )
            else:
                read.append(hit)
        tcpip = self.tcpip()
        if pending or tcpip is None:
            return
        if not read:
            at = member.unfiltered("IEASYM")[0].line if member.unfiltered("IEASYM") else 1
            self.add(
                file,
                at,
                "error",
                "no IEASYMxx member is in use, so the symbols Wazi aaS sets are not defined: "
                + ", ".join(f"&{n}" for n in WAZI_SYMBOLS),
            )
        self.steps.append("IEASYM: " + (", ".join(ref.label for ref, _ in read) or "none found"))
        self.ieasym_members = [MemberRead(ref=ref, status="found", records=records) for ref, records in read]
        self.check_members(read, tcpip)

    def tcpip(self) -> list[tuple[str, MemberRef, list[bytes]]] | None:
        """(kind, member, records) of the TCP/IP members the config names; None while some are pending."""
        out, pending = [], False
        for kind, spec in self.chain.tcpip.items():
            what = TCPIP_CHECKS[kind][0]
            match = _MEMBER_SPEC.fullmatch(spec)
            if match is None:
                continue  # a z/OS UNIX path: not on the volumes' data sets
            dsn, name = match.groups()
            holders = self.holders(dsn)
            if not holders:
                self.add(
                    f"{self.chain.volumes[self.chain.ipl_device]}:{spec}",
                    1,
                    "warning",
                    f"{what} {spec}: {dsn} is on no volume of the image; it is not checked",
                )
                continue
            ref = MemberRef(volser=holders[0], dsn=dsn, member=name)
            got = self.read(ref)
            if got is None:
                pending = True
            elif got.status == "found":
                out.append((kind, ref, got.records))
            else:
                self.add(ref.label, 1, "error", f"{what} {spec}: {got.message}")
        return None if pending else out

    def check_members(
        self, ieasyms: list[tuple[MemberRef, list[bytes]]], tcpip: list[tuple[str, MemberRef, list[bytes]]]
    ) -> None:
        texts = [(ref, member_text(records)) for ref, records in ieasyms]
        defined = set().union(*({d.key for d in parse_ieasym(text).definitions()} for _, text in texts))
        missing_reported: set[str] = set()
        for ref, text in texts:
            for f in check_ieasym(Member(name=ref.label, text=text)):
                if f.symbol and f.message.startswith(f"&{f.symbol} is not defined"):
                    # the members are one set of definitions: missing means missing from all, said once
                    if f.symbol in defined or f.symbol in missing_reported:
                        continue
                    missing_reported.add(f.symbol)
                self.findings.append(f)
        for kind, ref, records in tcpip:
            self.findings += TCPIP_CHECKS[kind][1](Member(name=ref.label, text=member_text(records)))


def evaluate(
    chain: ChainInput, volumes: dict[str, VolumeListing], members: dict[tuple[str, str, str], MemberRead]
) -> Evaluation:
    walk = _Chain(chain, volumes, members)
    walk.run()
    return Evaluation(
        findings=sort_findings(walk.findings),
        wanted=walk.wanted,
        unreadable=walk.unreadable,
        steps=walk.steps,
        ieasym=walk.ieasym_members,
    )


def member_key(ref: MemberRef) -> tuple[str, str, str]:
    return _key(ref)


def chain_input(cfg: Config, image: str) -> ChainInput:
    """What the chain of `image` starts from: its volumes, IPL device, LOADPARM, and the TCP/IP members
    the parmlib of its system residence component's source names."""
    img = cfg.image(image)
    components = cfg.image_components(img)
    sysres = next(c for c in components if c.type == "sysres")
    parmlib = cfg.source(sysres.source).parmlib
    tcpip = {k: v for k in TCPIP_CHECKS if (v := getattr(parmlib, k)) is not None}
    return ChainInput(
        image=img.name,
        ipl_device=img.ipl.device,
        loadparm=img.ipl.loadparm,
        volumes={v.devnum: v.volser for c in components for v in c.volumes},
        tcpip=tcpip,
    )
