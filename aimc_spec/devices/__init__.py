"""The device of the job spec: one spec model per response family, picked by `model`.

`DeviceSpec` is a union discriminated by `model`: each family's class holds the shared
fields (base.py) and its own response parameters, so a field of another family is
refused by name (aimc_spec/spec.py spec_problems lists the family's fields). Presets
(aimc_spec/presets.py) expand into a family's fields before the family is picked.

A new family is one module here with its class (a `model: Literal[...]` and its
fields) and one member in the `DeviceSpec` union below; the engine adds its response
in aimc_engine/devices/ and an entry in that package's FAMILIES (analog-model.md
section 2 says where each family is described).
"""

from __future__ import annotations

from typing import Annotated, Any, get_args

from pydantic import BeforeValidator, Field, TypeAdapter
from pydantic.json_schema import GetJsonSchemaHandler, JsonSchemaValue
from pydantic_core import CoreSchema

from aimc_spec.devices.base import MAX_D2D, DeviceSpecBase, PresetName
from aimc_spec.devices.constant import ConstantStepDeviceSpec, IdealDeviceSpec
from aimc_spec.devices.exp import ExpDeviceSpec
from aimc_spec.devices.exp_step import ExpStepDeviceSpec, ExpStepNoiseDeviceSpec, ExpStepSpec
from aimc_spec.devices.linear import LinearDeviceSpec, SoftBoundsDeviceSpec
from aimc_spec.devices.power import PowerDeviceSpec
from aimc_spec.devices.reference import SoftBoundsReferenceDeviceSpec
from aimc_spec.presets import PRESETS
from aimc_spec.spec_base import _fail, _same

# Every field of the one flat device model before the families: a spec normalised then
# (stored with a job, a checkpoint, an `aimc validate` output) has all of them, the
# other families' included, which its device never read.
FLAT_FIELDS = frozenset(
    {
        *("model", "preset", "w_min", "w_max", "states", "dw_min", "gamma", "gamma_down"),
        *("up_down", "c2c_noise", "c2c_mode", "d2d_variation", "d2d_w_min", "d2d_w_max"),
        *("d2d_up_down", "d2d_gamma", "write_noise_std", "exp_step"),
    }
)


def _from_flat(data: dict[str, Any]) -> dict[str, Any]:
    """A device normalised by the flat model, less the fields its family has not (they
    did nothing: the same device, the same numbers); any other mapping as it is."""
    if data.keys() != FLAT_FIELDS or data["model"] not in DEVICE_MODELS:
        return data
    family = FAMILY_SPECS[DEVICE_MODELS.index(data["model"])]
    return {key: value for key, value in data.items() if key in family.model_fields}


def _expand(data: Any) -> Any:
    """A device mapping with its preset's fields filled in (a field the user also gave
    must agree with the preset) and `model` defaulted, ready for the family's class."""
    if not isinstance(data, dict):
        return data  # a family instance passes; anything else fails the union's check
    data = _from_flat(data)
    if not data.get("preset"):
        return data if "model" in data else {**data, "model": DEFAULT_MODEL}
    preset = PRESETS.get(data["preset"]) if isinstance(data["preset"], str) else None
    if preset is None:
        return {**data, "model": data.get("model", DEFAULT_MODEL)}  # the family names it
    data = dict(data)
    # a field the preset does not set is the family's class to judge (gamma next to a
    # softbounds preset: not a field of softbounds)
    for key in sorted(data.keys() & {*preset, "states"}):
        expect = preset.get(key)
        if key == "states":
            expect = (preset["w_max"] - preset["w_min"]) / preset["dw_min"]
        if not _same(data[key], expect):
            raise _fail(
                key, f"set by preset {data['preset']!r} to {expect!r}; drop the preset or the field"
            )
    data.update(preset)
    data.pop("states", None)
    return data


class _AnyFamily:
    """The union's JSON schema: anyOf the families, without OpenAPI's `discriminator`,
    which requires its property while `model` may be left out (softbounds)."""

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = dict(handler(core))
        schema.pop("discriminator", None)
        schema["anyOf"] = schema.pop("oneOf")
        return schema


# the registry: one member per family
Families = (
    IdealDeviceSpec
    | ConstantStepDeviceSpec
    | LinearDeviceSpec
    | SoftBoundsDeviceSpec
    | PowerDeviceSpec
    | ExpDeviceSpec
    | ExpStepDeviceSpec
    | ExpStepNoiseDeviceSpec
    | SoftBoundsReferenceDeviceSpec
)
DeviceSpec = Annotated[Families, Field(discriminator="model"), BeforeValidator(_expand), _AnyFamily]
FAMILY_SPECS: tuple[type[DeviceSpecBase], ...] = get_args(Families)
DEVICE_MODELS = tuple(get_args(c.model_fields["model"].annotation)[0] for c in FAMILY_SPECS)
# the family a device given without `model` (nor a preset) is: the one whose tag has a default
DEFAULT_MODEL: str = next(
    c.model_fields["model"].default
    for c in FAMILY_SPECS
    if not c.model_fields["model"].is_required()
)
_ADAPTER: TypeAdapter[DeviceSpec] = TypeAdapter(DeviceSpec)


def parse_device(data: dict[str, Any] | None = None, /, **fields: Any) -> DeviceSpec:
    """A device spec from its fields (a mapping or keywords), as `analog.device` reads
    them: defaults, presets and the family's checks; raises pydantic's ValidationError."""
    return _ADAPTER.validate_python({**(data or {}), **fields})


__all__ = [
    "DEFAULT_MODEL",
    "DEVICE_MODELS",
    "FAMILY_SPECS",
    "FLAT_FIELDS",
    "MAX_D2D",
    "ConstantStepDeviceSpec",
    "DeviceSpec",
    "DeviceSpecBase",
    "ExpDeviceSpec",
    "ExpStepDeviceSpec",
    "ExpStepNoiseDeviceSpec",
    "ExpStepSpec",
    "IdealDeviceSpec",
    "LinearDeviceSpec",
    "PowerDeviceSpec",
    "PresetName",
    "SoftBoundsDeviceSpec",
    "SoftBoundsReferenceDeviceSpec",
    "parse_device",
]
