"""What a deploy of one image would create and upload: computed, never executed."""

from __future__ import annotations

from pydantic import BaseModel

from zimage import objects, resources, sizing
from zimage.config import Config, Image
from zimage.host_symbols import LEFT_TO_WAZI, requested_network


class PlannedResource(BaseModel):
    kind: str
    name: str
    detail: str = ""
    temporary: bool = True


class PlannedObject(BaseModel):
    key: str
    size: int | None = None
    content_type: str = "application/octet-stream"
    source: str | None = None  # the local file uploaded as-is


class Plan(BaseModel):
    image: str
    image_bytes: int
    boot_bytes: int
    data_volume_gb: int
    resources: list[PlannedResource]
    objects: list[PlannedObject]
    key_layout: str = "per-image"
    user_data_bytes: int | None = None
    network_symbols: str = ""

    def text(self) -> str:
        lines = [
            f"image {self.image}: {sizing.human(self.image_bytes)} of volumes "
            f"({sizing.human(self.boot_bytes)} on the system residence component)",
            "",
            "cloud resources (temporary ones are deleted by the run):",
        ]
        width = max(len(r.kind) for r in self.resources)
        name_width = max(len(r.name) for r in self.resources)
        for res in self.resources:
            mark = "temporary" if res.temporary else "kept     "
            lines.append(f"  {mark}  {res.kind:<{width}}  {res.name:<{name_width}}  {res.detail}".rstrip())
        lines += ["", f"objects in the bucket ({len(self.objects)}, key layout {self.key_layout}):"]
        for obj in self.objects:
            size = f"  ({sizing.human(obj.size)} uncompressed)" if obj.size else ""
            source = f"  (from {obj.source})" if obj.source else ""
            lines.append(f"  {obj.key}{size}{source}")
        lines += ["", f"network symbols: {self.network_symbols}"]
        if self.user_data_bytes is not None:
            lines += ["", f"user data: {self.user_data_bytes} bytes of {64 * 1024} allowed"]
        return "\n".join(lines) + "\n"


def plan(cfg: Config, image_name: str, build_id: str = "b0000000", user_data_bytes: int | None = None) -> Plan:
    image = cfg.image(image_name)
    target = cfg.cloud
    components = cfg.image_components(image)
    size = cfg.image_size(image)
    boot = sum(c.size_bytes for c in components if c.type == "sysres")
    gb = sizing.mover_volume_gb(image.layout, size, boot)
    data_gb = gb["data"]
    mover = target.mover
    n = lambda role: resources.name(build_id, role)  # noqa: E731
    res = [
        PlannedResource(kind="vpc", name=n("vpc"), detail=f"region {target.region}"),
        PlannedResource(kind="subnet", name=n("subnet"), detail=f"{target.zone_name}, 256 addresses"),
        PlannedResource(
            kind="security_group",
            name=n("sg"),
            detail="outbound all" + (", inbound 22" if mover.ssh_access else ", no inbound"),
        ),
        PlannedResource(kind="key", name=n("key"), detail="ed25519, generated for the build"),
        PlannedResource(
            kind="volume", name=n("boot"), detail=f"{gb['boot']} GB {mover.volume_profile}"
        ),
        PlannedResource(
            kind="volume", name=n("qcow2"), detail=f"{gb['scratch']} GB {mover.volume_profile}"
        ),
        PlannedResource(kind="volume", name=n("data"), detail=f"{data_gb} GB {mover.volume_profile}"),
        PlannedResource(
            kind="instance", name=n("mover"), detail=f"{mover.profile}, newest image matching {mover.image!r}"
        ),
    ]
    if mover.ssh_access:
        res.append(PlannedResource(kind="floating_ip", name=n("fip"), detail="for SSH access"))
    if target.encryption_key_crn:
        for r in res:
            if r.kind == "volume":
                r.detail += ", customer root key"
    res += [
        PlannedResource(
            kind="image", name=image.name, detail=f"custom image, {image.os}", temporary=False
        ),
        PlannedResource(kind="snapshot", name=image.snapshot_name, detail="of the data volume", temporary=False),
    ]
    key_layout = cfg.target.cos.key_layout if cfg.target else objects.PER_IMAGE
    keys = objects.ImageObjects(image.name, key_layout)
    objs = [
        PlannedObject(key=keys.metadata, content_type=objects.JSON),
        PlannedObject(key=keys.devmap, content_type=objects.TEXT),
    ]
    for field, name in objects.IMAGE_FILES.items():
        path = getattr(image, field)
        if path is not None:
            key = objects.auxiliary_key(image.name, name, key_layout)
            objs.append(PlannedObject(key=key, content_type=objects.content_type(name), source=path))
    for component in components:
        for vol in component.volumes:
            objs.append(PlannedObject(key=f"{keys.inputs}{vol.volser}_<generation>.gz", size=vol.size_bytes))
    objs.append(PlannedObject(key=objects.qcow2_key(image.name, build_id)))
    if key_layout == objects.REFERENCE:  # copied there once the image is published
        objs.append(PlannedObject(key=objects.reference_qcow2_key(image.name)))
    return Plan(
        image=image.name,
        image_bytes=size,
        boot_bytes=boot,
        data_volume_gb=data_gb,
        resources=res,
        objects=objs,
        key_layout=key_layout,
        user_data_bytes=user_data_bytes,
        network_symbols=_network_symbols(image),
    )


def _network_symbols(image: Image) -> str:
    network = requested_network(image)
    if network is None:
        return LEFT_TO_WAZI
    values = ", ".join(f"{k}={v}" for k, v in network.model_dump().items())
    return (f"{values}, written by the mover into the IEASYMxx members the IPL chain leads to "
            "(read on the storage server when the deploy runs)")
