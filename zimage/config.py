"""The configuration file (DESIGN.md §3) as pydantic models, with every rule of §4.

`parse_config(text)` checks a whole file and raises `ConfigError` listing every problem with
its field path (``images[0].ipl.loadparm``) and YAML line. Nothing here reads files or the
environment: secrets are only *named* here (environment variables or Prefect Secret blocks).
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import string
import zoneinfo
from collections.abc import Iterable, Iterator
from functools import cached_property
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from zimage import devices, loadparm, names, sizing

# --- field types ---------------------------------------------------------------------------

Volser = Annotated[str, AfterValidator(names.volser)]
Sysname = Annotated[str, AfterValidator(names.sysname)]
Devnum = Annotated[str, BeforeValidator(names.devnum)]
VpcName = Annotated[str, AfterValidator(names.vpc_name)]
Port = Annotated[int, Field(ge=1, le=65535)]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BLOCK_NAME = re.compile(r"^[a-z0-9][-a-z0-9]*$")
_DSN_QUALIFIER = r"[A-Z#@$][A-Z0-9#@$-]{0,7}"
_DATASET_MEMBER = re.compile(rf"^{_DSN_QUALIFIER}(\.{_DSN_QUALIFIER})*\({_DSN_QUALIFIER}\)$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]{2}-[a-z]{2,}$")
_OS_NAME = re.compile(r"^[a-z0-9][-a-z0-9]*$")
_CRN = re.compile(r"^crn:v1:[^:]*:[^:]*:[^:]+:[^:]*:[^:]*:[^:]+:[^:]*:[^:]*$")
_MEMORY = re.compile(r"^[1-9][0-9]*[mMgG]$")


def _env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not an environment variable name (letters, digits, _)")
    return value


def _block_name(value: str) -> str:
    if not _BLOCK_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a Prefect block name (lowercase letters, digits, -)")
    return value


def _absolute_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"path {value!r} must be absolute (start with /)")
    if ".." in value.split("/"):
        raise ValueError(f"path {value!r} must not contain '..'")
    return posixpath.normpath(value)


def _https_url(value: str) -> str:
    if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]+)?(/[^\s]*)?", value):
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value.rstrip("/")


def _ipv4(value: str) -> str:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a dotted IPv4 address") from None
    return value


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"{value!r} is not a valid regular expression: {exc}") from None
    return value


EnvName = Annotated[str, AfterValidator(_env_name)]
BlockName = Annotated[str, AfterValidator(_block_name)]
AbsPath = Annotated[str, AfterValidator(_absolute_path)]
Url = Annotated[str, AfterValidator(_https_url)]
IPv4 = Annotated[str, AfterValidator(_ipv4)]


def ipv4_cidr(value: str, what: str) -> str:
    """An IPv4 network such as 203.0.113.0/24 (host bits zero), checked before anything is created."""
    try:
        return str(ipaddress.IPv4Network(value, strict=True))
    except ValueError as exc:
        raise ValueError(f"{what} {value!r} is not an IPv4 CIDR block such as 203.0.113.0/24: {exc}") from None


class Model(BaseModel):
    # A typo in a key must not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- storage and sources -------------------------------------------------------------------


class SshEndpoint(Model):
    host: str = Field(min_length=1, description="Host name or address")
    port: Port = 22
    username: str = Field(min_length=1)
    private_key_file: str | None = Field(None, description="Private key file for key authentication")
    private_key_block: BlockName | None = Field(
        None, description="Prefect Secret block holding the private key (instead of a file)"
    )
    known_hosts_file: str = Field(
        "~/.ssh/known_hosts", description="Host keys are always verified against this file"
    )

    def _needs_key(self, remote: bool) -> None:
        if remote and not (self.private_key_file or self.private_key_block):
            raise ValueError("give private_key_file or private_key_block (key authentication only)")
        if self.private_key_file and self.private_key_block:
            raise ValueError("give private_key_file or private_key_block, not both")


_COMMAND_NAME = re.compile(r"^[A-Za-z0-9_./+-]{1,255}$")


def _command_name(value: str) -> str:
    if not _COMMAND_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a command name or path (letters, digits, _ . / + -)")
    return value


class Storage(SshEndpoint):
    """The sftp staging server."""

    root: AbsPath = Field(description="Absolute staging directory on the storage server")
    transport: Literal["sftp", "local"] = Field(
        "sftp", description="'local': the staging directory is on this machine (demo, tests)"
    )
    authorized_keys_file: str = Field(
        "~/.ssh/authorized_keys",
        description="On the storage server: where deploy-host authorises its short-lived, read-only pull key",
    )
    python: Annotated[str, AfterValidator(_command_name)] = Field(
        "python3", description="Python 3.8 or later on the storage server (IPL-chain look-ups, uploads to COS)"
    )
    stage_path: Literal["auto", "direct", "relay"] = Field(
        "auto",
        description="How staged files reach COS: direct (the storage server uploads them itself, through "
        "presigned part URLs), relay (read over sftp and uploaded from this machine), auto (direct, or relay "
        "when the storage server has no Python 3 or cannot reach COS)",
    )

    @model_validator(mode="after")
    def _key(self) -> Storage:
        self._needs_key(self.transport == "sftp")
        return self


PLACEHOLDERS = frozenset(
    {
        "volser", "devnum", "devtype", "target", "target_host", "target_port",
        "target_user", "target_path", "utility_home",
    }
)


def _command_template(value: str) -> str:
    used: list[str] = []
    try:
        parsed = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise ValueError(f"extraction command: {exc} (write literal braces as {{{{ and }}}})") from None
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in PLACEHOLDERS:
            raise ValueError(
                f"extraction command: unknown placeholder {{{field}}}; "
                f"allowed: {', '.join('{' + p + '}' for p in sorted(PLACEHOLDERS))}"
            )
        if spec or conversion:
            raise ValueError(f"extraction command: placeholder {{{field}}} takes no format or conversion")
        used.append(field)
    if "volser" not in used and "target" not in used and "target_path" not in used:
        raise ValueError("extraction command must use {target}, {target_path} or {volser} to say where the volume goes")
    return value


class Extraction(Model):
    command: Annotated[str, AfterValidator(_command_template)] = Field(
        description="Run once per volume on the source; placeholders are validated and shell-quoted"
    )
    utility_home: str | None = Field(None, description="Install directory of the extraction utility")
    timeout_seconds: int = Field(6 * 3600, ge=60, description="Longest one volume's extraction may take")

    @model_validator(mode="after")
    def _home(self) -> Extraction:
        if "{utility_home}" in self.command and not self.utility_home:
            raise ValueError("the command uses {utility_home}: set extraction.utility_home")
        return self


def _member(value: str) -> str:
    upper = value.strip().upper()
    if value.startswith("/"):
        return _absolute_path(value)
    if not _DATASET_MEMBER.fullmatch(upper):
        raise ValueError(f"{value!r}: expected a data set member such as 'SYS1.PARMLIB(IEASYM00)' or an absolute path")
    return upper


Member = Annotated[str, AfterValidator(_member)]


class Parmlib(Model):
    ieasym: Member | None = None
    tcpip_profile: Member | None = None
    tcpdata: Member | None = None


_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,?#-]+$")


def _cron(value: str) -> str:
    fields = value.split()
    if len(fields) != 5 or not all(_CRON_FIELD.fullmatch(f) for f in fields):
        raise ValueError(f"cron {value!r}: expected five fields (minute hour day month weekday), e.g. '0 2 * * 6'")
    return " ".join(fields)


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone {value!r}: expected an IANA time zone such as Asia/Tokyo or UTC") from None
    return value


class Refresh(Model):
    """A scheduled refresh of a source system's images: the deployment refresh-SYSTEM."""

    cron: Annotated[str, AfterValidator(_cron)] = Field(description="When: five cron fields, e.g. '0 2 * * 6'")
    timezone: Annotated[str, AfterValidator(_timezone)] = Field("UTC", description="IANA time zone of the cron")
    images: list[str] = Field(min_length=1, description="Images refreshed at each of these times, one run each")
    host: str | None = Field(None, description="Emulator host (hosts[].name) to deploy to instead of IBM Cloud")
    active: bool = Field(True, description="false: the schedule is deployed paused (the shipped example is)")


class Source(SshEndpoint):
    """A source z/OS system (or a Linux host holding emulated volumes)."""

    name: Sysname = Field(description="System name: 1-8 of A-Z 0-9 @ # $")
    transport: Literal["ssh", "local"] = Field(
        "ssh", description="'local': run the extraction command on this machine (demo, tests)"
    )
    extraction: Extraction
    parmlib: Parmlib = Parmlib()
    refresh: Refresh | None = Field(None, description="Schedule of the deployment refresh-SYSTEM")

    @model_validator(mode="after")
    def _key(self) -> Source:
        self._needs_key(self.transport == "ssh")
        return self


# --- target --------------------------------------------------------------------------------


class Cos(Model):
    instance_name: str = Field(min_length=1, description="Cloud Object Storage instance name")
    bucket: str = Field(description="Bucket for volumes, auxiliary files and the qcow2")
    region: str
    endpoint: Url | None = Field(None, description="null: the bucket's direct endpoint")
    key_layout: Literal["per-image", "reference"] = Field(
        "per-image",
        description="per-image: each image's objects under <image>/; reference: at the bucket root, where the "
        "existing builder's data_mover.py and Terraform read them (one image per bucket at a time)",
    )
    hmac_access_key_id_env: EnvName = "COS_HMAC_ACCESS_KEY_ID"
    hmac_secret_access_key_env: EnvName = "COS_HMAC_SECRET_ACCESS_KEY"
    hmac_block: BlockName | None = Field(
        None, description="Prefect Secret block holding {access_key_id, secret_access_key} as JSON"
    )
    local_directory: AbsPath | None = Field(
        None, description="Use this directory as the object store instead of COS (demo, tests)"
    )

    @model_validator(mode="after")
    def _check(self) -> Cos:
        if not _BUCKET.fullmatch(self.bucket) or ".." in self.bucket:
            raise ValueError(f"bucket {self.bucket!r}: 3-63 of lowercase letters, digits, '-', '.'")
        if not _REGION.fullmatch(self.region):
            raise ValueError(f"COS region {self.region!r}: expected a region such as 'jp-tok'")
        return self

    @property
    def direct_endpoint(self) -> str:
        return self.endpoint or f"https://s3.direct.{self.region}.cloud-object-storage.appdomain.cloud"


class Mover(Model):
    profile: str = Field("bx2d-16x64", description="Instance profile of the ephemeral mover VSI")
    image: Annotated[str, AfterValidator(_regex)] = Field(
        ".*ubuntu.*22-04.*amd64.*", description="Regular expression; the newest matching image is used"
    )
    volume_profile: str = Field("10iops-tier", description="Profile of the mover's block volumes")
    ssh_access: bool = Field(False, description="Open port 22 and add a floating IP (debugging only)")
    mode: Literal["vsi", "local"] = Field(
        "vsi", description="'local': run the data mover on this machine instead of a VSI (demo)"
    )
    jobs: int | None = Field(None, ge=1, le=64, description="Volumes converted at once (default: CPUs)")
    deadline_hours: float = Field(24.0, gt=0, le=168, description="Longest a conversion may take")
    accelerator_wheels: list[AbsPath] = Field(
        default_factory=list,
        description="Wheels of isal or zlib-ng for the mover's Python (3.10 on Ubuntu 22.04), on this machine; "
        "uploaded with the volumes, they about double the mover's inflate speed",
    )
    output_directory: AbsPath | None = Field(
        None, description="mode local: where <image>.qcow2, <image>-data.img and report.json are written"
    )

    @model_validator(mode="after")
    def _local_output(self) -> Mover:
        for wheel in self.accelerator_wheels:
            if not re.fullmatch(r"[A-Za-z0-9_.+-]+\.whl", posixpath.basename(wheel)):
                raise ValueError(f"accelerator_wheels: {wheel!r} is not a wheel file (*.whl)")
        if self.mode == "local" and not self.output_directory:
            raise ValueError("mode local needs output_directory (where the qcow2 and data image are written)")
        return self


class Target(Model):
    """IBM Cloud."""

    region: str
    zone: int = Field(ge=1, le=3, description="Zone number; with region jp-tok, 1 is jp-tok-1")
    resource_group: str = "Default"
    api_key_env: EnvName = "IBMCLOUD_API_KEY"
    api_key_block: BlockName | None = Field(None, description="Prefect Secret block with the API key")
    iam_endpoint: Url = "https://iam.cloud.ibm.com"
    vpc_endpoint: Url | None = Field(None, description="null: https://<region>.iaas.cloud.ibm.com/v1")
    cos: Cos
    mover: Mover = Mover()
    encryption_key_crn: str | None = Field(None, description="Key Protect / HPCS root key CRN")
    insecure_http: bool = Field(
        False, description="Let the IAM, VPC and COS endpoints be http:// (local stand-ins only: the API key travels)"
    )

    @model_validator(mode="after")
    def _check(self) -> Target:
        if not _REGION.fullmatch(self.region):
            raise ValueError(f"region {self.region!r}: expected a region such as 'jp-tok'")
        if self.encryption_key_crn is not None and not _CRN.fullmatch(self.encryption_key_crn):
            raise ValueError(f"encryption_key_crn {self.encryption_key_crn!r} is not a CRN (crn:v1:...)")
        plain = [f"{field} {url}" for field, url in self.http_endpoints().items()]
        if plain and not self.insecure_http:
            raise ValueError(
                f"{', '.join(plain)}: plain http would carry the API key and the data unencrypted; use https, or "
                "set insecure_http: true for a local stand-in"
            )
        return self

    def http_endpoints(self) -> dict[str, str]:
        """The endpoints (by key) that are plain http://."""
        urls = {"iam_endpoint": self.iam_endpoint, "vpc_endpoint": self.vpc_endpoint, "cos.endpoint": self.cos.endpoint}
        return {k: v for k, v in urls.items() if v and v.lower().startswith("http://")}

    @property
    def zone_name(self) -> str:
        return f"{self.region}-{self.zone}"

    @property
    def vpc_url(self) -> str:
        return self.vpc_endpoint or f"https://{self.region}.iaas.cloud.ibm.com/v1"


# --- components and images -----------------------------------------------------------------


class Volume(Model):
    volser: Volser
    devnum: Devnum
    devtype: str
    cylinders: int | None = Field(None, ge=1, description="Actual cylinders; default: the model's")

    @model_validator(mode="after")
    def _geometry(self) -> Volume:
        model = devices.model(self.devtype)
        if self.cylinders is not None and self.cylinders > model.cylinders:
            raise ValueError(
                f"cylinders {self.cylinders} exceed the {model.devtype} maximum of {model.cylinders}"
            )
        return self

    @property
    def family(self) -> str:
        return devices.model(self.devtype).family

    @property
    def size_bytes(self) -> int:
        return devices.capacity_bytes(self.cylinders or devices.model(self.devtype).cylinders)


class Component(Model):
    name: VpcName
    source: Sysname
    type: Literal["sysres", "volumes"]
    retention: int = Field(3, ge=1, le=100, description="Extraction generations kept on the storage server")
    volumes: list[Volume] = Field(min_length=1)

    @property
    def size_bytes(self) -> int:
        return sum(v.size_bytes for v in self.volumes)


def _loadparm(value: object) -> str:
    return loadparm.parse(value).text  # type: ignore[arg-type]


class Ipl(Model):
    device: Devnum
    loadparm: Annotated[str, BeforeValidator(_loadparm)]


class Network(Model):
    """Values Wazi aaS gives the three system symbols (DESIGN.md §9)."""

    HOMEIPADDRESS1: IPv4 = "172.26.1.2"
    DEFAULTROUTEADDR: IPv4 = "172.26.1.1"
    NAMESERVERADDR1: IPv4 = "172.26.1.1"


class DevmapSystem(Model):
    memory: str = "16g"
    port_3270: int = Field(3270, alias="3270port", ge=1, le=65535)
    processors: int = Field(2, ge=1, le=8)

    @model_validator(mode="after")
    def _memory(self) -> DevmapSystem:
        if not _MEMORY.fullmatch(self.memory):
            raise ValueError(f"memory {self.memory!r}: expected a size such as 16g or 8192m")
        return self


class DevmapManager(Model):
    """An extra zPDT device manager, e.g. aws3274 for 3270 consoles or awsosa for OSA."""

    name: str = Field(pattern=r"^[a-z0-9]{1,16}$")
    id: str = Field(pattern=r"^[0-9A-Fa-f]{4}$")
    devices: list[str] = Field(default_factory=list, description="Device lines without 'device '")

    @model_validator(mode="after")
    def _lines(self) -> DevmapManager:
        for line in self.devices:
            if "\n" in line or not line.strip():
                raise ValueError(f"device line {line!r} must be one non-empty line")
        return self


class Devmap(Model):
    system: DevmapSystem = DevmapSystem()
    path_prefix: AbsPath = Field("/volumes", description="Where the volumes lie on the Wazi aaS server")
    managers: list[DevmapManager] = Field(default_factory=list)


def local_path(value: str, base_dir: str | None) -> str:
    """A path on this machine named in the config: absolute, ~/..., or relative to the config's directory."""
    if not value.strip() or "\n" in value or "\x00" in value:
        raise ValueError(f"{value!r} is not a file path")
    if value.startswith(("/", "~")) or base_dir is None:
        return value
    return posixpath.normpath(posixpath.join(base_dir, value))


class Image(Model):
    name: Annotated[VpcName, Field(max_length=58)]  # leaves room for the '-data' snapshot suffix
    components: list[VpcName] = Field(min_length=1)
    os: str = Field("zos-2-5-s390x-dev-test-byol", description="operating_system.name of the custom image")
    layout: Literal["all-in-data", "boot-split"] = "all-in-data"
    ipl: Ipl
    network: Network = Network()
    devmap: Devmap = Devmap()
    env_overrides: str | None = Field(
        None, description="Local file uploaded as-is and copied to the data volume's root as env-overrides"
    )
    properties: str | None = Field(
        None, description="Local file uploaded as-is and copied to the data volume's root as properties.json"
    )

    @field_validator("env_overrides", "properties")
    @classmethod
    def _local_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else local_path(value, (info.context or {}).get("base_dir"))

    @model_validator(mode="after")
    def _os(self) -> Image:
        if not _OS_NAME.fullmatch(self.os):
            raise ValueError(f"os {self.os!r}: expected an operating system name such as zos-2-5-s390x-dev-test-byol")
        return self

    @property
    def snapshot_name(self) -> str:
        return f"{self.name}-data"


# --- Wazi aaS servers zimage may stop or export (DESIGN.md §17) ----------------------------


def _one_line(value: str) -> str:
    if not value.strip() or "\n" in value or "\r" in value:
        raise ValueError("the shutdown command must be one non-empty line")
    return value


class Shutdown(Model):
    command: Annotated[str, AfterValidator(_one_line)] = Field(
        description="The site's shutdown procedure, run over SSH on z/OS UNIX; it must end with exit status 0"
    )
    timeout_minutes: float = Field(
        20, gt=0, le=24 * 60, description="Longest wait, command included, until z/OS no longer answers"
    )


class Instance(SshEndpoint):
    """A Wazi aaS server: its VPC instance name and how to reach its z/OS over SSH."""

    name: VpcName = Field(description="The VPC instance name")
    shutdown: Shutdown
    data_volume: VpcName | None = Field(
        None, description="Name of the volume or attachment holding the z/OS volumes; default: the only data volume"
    )
    system: Sysname | None = Field(
        None, description="System name whose staging directory receives exports of components not in the config"
    )

    @model_validator(mode="after")
    def _key(self) -> Instance:
        self._needs_key(True)
        return self


# --- emulator hosts (DESIGN.md §15) ---------------------------------------------------------

_OWNER = re.compile(r"^([a-z_][a-z0-9_.-]{0,31}|[0-9]{1,10}:[0-9]{1,10})$")


def _owner(value: str) -> str:
    if not _OWNER.fullmatch(value):
        raise ValueError(f"owner {value!r}: expected a user name (e.g. ibmsys1) or uid:gid (e.g. 1000:1000)")
    return value


class HostDevmap(Model):
    """Settings of the host's devmap; what is not given comes from the image's devmap."""

    system: DevmapSystem | None = None
    managers: list[DevmapManager] | None = None


class Host(SshEndpoint):
    """A Linux machine where z/OS runs under zPDT, ZD&T or IBM Test Accelerator for Z."""

    name: VpcName
    root: AbsPath = Field(description="Absolute directory on the host; zimage owns what is below it")
    owner: Annotated[str, AfterValidator(_owner)] = Field(
        description="User or uid:gid owning the volume files and the devmap"
    )
    keep: int = Field(2, ge=1, le=100, description="Deployed sets kept per image, the current one included")
    network: Network | None = Field(None, description="Values of the network symbols; default: the image's")
    devmap: HostDevmap = HostDevmap()
    python: Annotated[str, AfterValidator(_command_name)] = Field(
        "python3", description="Python 3.8 or later on the host (runs the data mover)"
    )
    data_path: Literal["auto", "direct", "local", "relay"] = Field(
        "auto",
        description="How volumes reach the host: 'direct' pulls from the storage server, 'local' reads them on the "
        "host (storage and host are one machine), 'relay' passes them through this machine; 'auto' picks local "
        "when storage has the same host and port, else direct when the host reaches the storage server, else relay",
    )

    @model_validator(mode="after")
    def _key(self) -> Host:
        self._needs_key(True)
        return self


# --- the whole file ------------------------------------------------------------------------


class Issue(BaseModel):
    """One problem in a config: where (field path, YAML line) and what."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path or '(top level)'}: {self.message}"


class NoTarget(ValueError):
    """An IBM Cloud flow was asked of a config without a target: section."""


class ConfigError(ValueError):
    def __init__(self, issues: list[Issue], source: str = "config"):
        self.issues = issues
        self.source = source
        if len(issues) == 1:  # one line: it is what a failed run's state message shows
            super().__init__(f"{source}: {issues[0]}")
        else:
            super().__init__(f"{source}: {len(issues)} problem(s)\n" + "\n".join(f"  {i}" for i in issues))


class Config(Model):
    storage: Storage
    sources: list[Source] = Field(min_length=1)
    target: Target | None = Field(None, description="IBM Cloud; needed only by the IBM Cloud flows")
    components: list[Component] = Field(min_length=1)
    images: list[Image] = Field(default_factory=list)
    instances: list[Instance] = Field(default_factory=list, description="Wazi aaS servers to stop or export")
    hosts: list[Host] = Field(default_factory=list, description="Emulator hosts deploy-host installs images on")

    @model_validator(mode="after")
    def _cross(self) -> Config:
        issues = list(_cross_check(self))
        if issues:
            raise PydanticCustomError(
                "cross_check", "{summary}", {"summary": "; ".join(map(str, issues)), "issues": issues}
            )
        return self

    @cached_property
    def _by_name(self) -> dict[str, dict[str, Any]]:
        return {
            "source": {s.name: s for s in self.sources},
            "component": {c.name: c for c in self.components},
            "image": {i.name: i for i in self.images},
            "host": {h.name: h for h in self.hosts},
            "instance": {i.name: i for i in self.instances},
        }

    def source(self, name: str) -> Source:
        return self._lookup("source", name)

    def host(self, name: str) -> Host:
        return self._lookup("host", name)

    @property
    def cloud(self) -> Target:
        """The IBM Cloud section, for the flows that need it."""
        if self.target is None:
            raise NoTarget(
                "this config has no target: section (IBM Cloud); add one to deploy to IBM Cloud, "
                "or deploy to an emulator host with `zimage run deploy-host`"
            )
        return self.target

    def component(self, name: str) -> Component:
        return self._lookup("component", name)

    def image(self, name: str) -> Image:
        return self._lookup("image", name)

    def instance(self, name: str) -> Instance:
        return self._lookup("instance", name)

    def image_components(self, image: Image) -> list[Component]:
        return [self.component(n) for n in image.components]

    def image_size(self, image: Image) -> int:
        return sum(c.size_bytes for c in self.image_components(image))

    def _lookup(self, kind: str, name: str) -> Any:
        try:
            return self._by_name[kind][name]
        except KeyError:
            known = ", ".join(sorted(self._by_name[kind])) or "none"
            raise UnknownName(f"no {kind} named {name!r} in the config (known: {known})") from None


class UnknownName(KeyError):
    """A name the config does not hold; its text is the message alone (KeyError's would quote it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _duplicates(items: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    seen: dict[str, str] = {}
    for path, key in items:
        if key in seen:
            yield path, f"{key!r} appears again (first at {seen[key]})"
        else:
            seen[key] = path


def _cross_check(cfg: Config) -> Iterator[Issue]:
    """Rules that span several parts of the file."""
    kinds = (
        ("sources", cfg.sources),
        ("components", cfg.components),
        ("images", cfg.images),
        ("instances", cfg.instances),
        ("hosts", cfg.hosts),
    )
    for kind, items in kinds:
        for path, msg in _duplicates((f"{kind}[{i}].name", x.name) for i, x in enumerate(items)):
            yield Issue(path=path, message=f"duplicate name: {msg}")
    sources = {s.name for s in cfg.sources}
    components = {c.name: (i, c) for i, c in enumerate(cfg.components)}
    for i, comp in enumerate(cfg.components):
        if comp.source not in sources:
            yield Issue(
                path=f"components[{i}].source",
                message=f"no source named {comp.source!r} (known: {', '.join(sorted(sources))})",
            )
        for field in ("volser", "devnum"):
            pairs = ((f"components[{i}].volumes[{j}].{field}", getattr(v, field)) for j, v in enumerate(comp.volumes))
            for path, msg in _duplicates(pairs):
                yield Issue(path=path, message=f"duplicate {field}: {msg}")
    for i, image in enumerate(cfg.images):
        yield from _check_image(i, image, components)
    yield from _check_refreshes(cfg, components)


def _check_refreshes(cfg: Config, components: dict[str, tuple[int, Component]]) -> Iterator[Issue]:
    images = {i.name: i for i in cfg.images}
    hosts = {h.name for h in cfg.hosts}
    for i, source in enumerate(cfg.sources):
        if source.refresh is None:
            continue
        at = f"sources[{i}].refresh"
        for j, name in enumerate(source.refresh.images):
            image = images.get(name)
            if image is None:
                yield Issue(path=f"{at}.images[{j}]",
                            message=f"no image named {name!r} (known: {', '.join(sorted(images)) or 'none'})")
            elif not any(c in components and components[c][1].source == source.name for c in image.components):
                yield Issue(path=f"{at}.images[{j}]", message=f"image {name!r} has no component from {source.name}")
        if source.refresh.host is not None and source.refresh.host not in hosts:
            yield Issue(path=f"{at}.host",
                        message=f"no host named {source.refresh.host!r} (known: {', '.join(sorted(hosts)) or 'none'})")


def _check_image(i: int, image: Image, components: dict[str, tuple[int, Component]]) -> Iterator[Issue]:
    at = f"images[{i}]"
    members: list[tuple[int, Component]] = []
    for k, name in enumerate(image.components):
        if name not in components:
            yield Issue(path=f"{at}.components[{k}]", message=f"no component named {name!r}")
        else:
            members.append(components[name])
    for path, msg in _duplicates((f"{at}.components[{k}]", n) for k, n in enumerate(image.components)):
        yield Issue(path=path, message=f"component listed twice: {msg}")
    if len(members) != len(image.components):
        return
    sysres = [c for _, c in members if c.type == "sysres"]
    if len(sysres) != 1:
        yield Issue(
            path=f"{at}.components",
            message=f"an image needs exactly one sysres component, found {len(sysres)}"
            + (f" ({', '.join(c.name for c in sysres)})" if sysres else ""),
        )
    for field in ("volser", "devnum"):
        # Within one component the component check already reported; here only across components.
        owner: dict[str, str] = {}
        for j, comp in members:
            for k, vol in enumerate(comp.volumes):
                key = getattr(vol, field)
                if key in owner and owner[key] != comp.name:
                    yield Issue(
                        path=f"components[{j}].volumes[{k}].{field}",
                        message=f"{field} {key} is also in component {owner[key]!r} of image {image.name!r}",
                    )
                owner.setdefault(key, comp.name)
    if len(sysres) == 1 and image.ipl.device not in {v.devnum for v in sysres[0].volumes}:
        yield Issue(
            path=f"{at}.ipl.device",
            message=f"IPL device {image.ipl.device} is not a volume of the sysres component {sysres[0].name!r}",
        )
    size = sum(c.size_bytes for _, c in members)
    if size > sizing.IMAGE_LIMIT_BYTES:
        yield Issue(
            path=f"{at}.components",
            message=f"image size {sizing.human(size)} exceeds the limit of {sizing.human(sizing.IMAGE_LIMIT_BYTES)}",
        )
    elif not sizing.fits_data_volume(size):
        yield Issue(
            path=f"{at}.components",
            message=f"image size {sizing.human(size)} does not fit a {sizing.VOLUME_LIMIT_GB} GB data volume "
            "with the file system's overhead",
        )


# --- parsing with paths and lines ----------------------------------------------------------


def _format_loc(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class that holds the field at loc's parent (for 'unknown key' hints)."""
    model: Any = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) else None
        if field is None:
            return None
        model = _inner_model(field.annotation)
        if model is None:
            return None
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _keys(model: type[BaseModel]) -> list[str]:
    return sorted(f.alias or name for name, f in model.model_fields.items())


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if getattr(k, "value", None) == part]
            if not match:
                break
            key, node = match[0]
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _issues_from(exc: ValidationError, root: yaml.Node | None) -> list[Issue]:
    issues: list[Issue] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        if err["type"] == "cross_check":
            for issue in err["ctx"]["issues"]:
                parsed = _parse_path(issue.path)
                issues.append(issue.model_copy(update={"line": _line_of(root, parsed)}))
            continue
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            model = _model_at(loc)
            known = f"; expected one of: {', '.join(_keys(model))}" if model else ""
            message = f"unknown key {loc[-1]!r}{known}"
        elif err["type"] == "missing":
            message = "required key is missing"
        issues.append(Issue(path=_format_loc(loc), message=message, line=_line_of(root, loc)))
    return issues


def _parse_path(path: str) -> tuple[int | str, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", path))


def parse_config(text: str, source: str = "config", base_dir: str | None = None) -> Config:
    """Parse and check a YAML config; raises ConfigError with every problem found. Relative local
    file paths (images[].env_overrides, images[].properties) are made absolute against base_dir."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(
            [Issue(path="", message=f"not valid YAML: {exc}", line=mark.line + 1 if mark else None)], source
        ) from None
    if not isinstance(data, dict):
        raise ConfigError([Issue(path="", message="expected a mapping with storage, sources, target, ...")], source)
    try:
        return Config.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(_issues_from(exc, root), source) from None


def issue_at(text: str, path: str, message: str) -> Issue:
    """An Issue found after parsing (e.g. a named file that cannot be read), with its YAML line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        root = None
    return Issue(path=path, message=message, line=_line_of(root, _parse_path(path)))


def dump_config(cfg: Config) -> str:
    """YAML text of a config, keys in model order, defaults included."""
    return yaml.safe_dump(cfg.model_dump(mode="json", by_alias=True), sort_keys=False, allow_unicode=True)
