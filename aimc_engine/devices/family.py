"""Response-function families: what each `analog.device.model` is, in one place.

A family gives q_+(w) and q_-(w), the pulse response as a fraction of dw_min
(analog-model.md section 2), and tells the update code what it may assume: the linear
family (q linear in w) has a closed form for n pulses (linear.py), the others are
replayed pulse by pulse (replay.py). Each family's responses live in a module of its
own (linear.py, power.py, exp.py, exp_step.py, reference.py); a new family adds a module and an
entry in FAMILIES, next to its spec model (aimc_spec/devices/, where the spec's
fields of each family live).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from aimc_engine.devices import exp, exp_step, linear, power, reference
from aimc_spec.spec import DeviceSpec

Param = Tensor | float  # a float when every element of the tile shares the value
# q_+, q_- from the family's own spec model (aimc_spec/devices/), w and the bounds
Curve = Callable[[Any, Tensor, Param, Param], tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class Family:
    """One model's response family and its properties.

    closed_form: q = 1 - g w / bound, so n pulses have a closed form (linear.py).
    clips: weights stay in [w_min, w_max] (the ideal device has no bounds).
    mean_bound_reference: the response reads the nominal bounds while each element
        clips at its own (aihwkit's LinearStep); else each element's own bounds.
    curve: q_+, q_- of a curved family (None for the linear family, whose response
        comes from its slopes).
    every_field: the family has every field of its aihwkit 1.2 class, and draws its
        device-to-device variation as aihwkit does (populate.py).
    reference: the weight is the device state less a per-element reference r; the
        curve reads the state and its bounds (reference.py).
    """

    name: str
    closed_form: bool = False
    clips: bool = True
    mean_bound_reference: bool = False
    curve: Curve | None = None
    every_field: bool = False
    reference: bool = False


FAMILIES: dict[str, Family] = {
    "ideal": Family("ideal", closed_form=True, clips=False),
    "constant_step": Family("constant_step", closed_form=True),
    "linear": Family("linear", closed_form=True, mean_bound_reference=True),
    "softbounds": Family("softbounds", closed_form=True),
    "power": Family("power", curve=power.response),
    "exp": Family("exp", curve=exp.response),
    "exp_step": Family("exp_step", curve=exp_step.response),
    "exp_step_noise": Family("exp_step_noise", curve=exp_step.stuck_safe, every_field=True),
    "softbounds_reference": Family(
        "softbounds_reference", curve=reference.response, every_field=True, reference=True
    ),
}
LINEAR_FAMILY = tuple(name for name, f in FAMILIES.items() if f.closed_form)


def family_of(spec: DeviceSpec) -> Family:
    return FAMILIES[spec.model]


def raw_response(spec: DeviceSpec, w: Tensor, w_min: Param, w_max: Param) -> tuple[Tensor, Tensor]:
    """q_+(w), q_-(w) of the device family (table in analog-model.md section 2)."""
    family = family_of(spec)
    if family.curve is None:
        g_up, g_down = spec.slopes()
        return linear.response(g_up, g_down, w_max, w_min, w)
    return family.curve(spec, w, w_min, w_max)


def symmetric_parts(q_plus: Tensor, q_minus: Tensor) -> tuple[Tensor, Tensor]:
    """F = (q_- + q_+)/2 (symmetric part) and G = (q_- - q_+)/2 (asymmetric part)."""
    return (q_minus + q_plus) / 2, (q_minus - q_plus) / 2
