"""Unit cells: K devices per weight, read as one weight (analog-model.md section 10).

A cell holds the states of its K devices as one (K, out, in) buffer and a Device per
unit, each with its own device-to-device draw. The tile (tiles.py) turns an update
into a delta or pulse counts as for one device; the cell decides which devices take
them, and the tile reads the weight back as sum_k gamma_k w_k. The rules follow
aihwkit 1.2's OneSidedRPUDevice and VectorRPUDevice (docs/aihwkit.md, unit cells).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from aimc_engine.devices import Device
from aimc_engine.mvm import analog_mvm
from aimc_engine.pulses import pulse_train_counts
from aimc_engine.rng import counter_uniform, draw_key
from aimc_spec.spec import DeviceSpec, IOSpec
from aimc_spec.unit_cell_spec import OneSidedCellSpec, UnitCellSpec

UPDATES, CURRENT, REFRESHES = 0, 1, 2  # the slots of `counters`


class UnitCell(nn.Module):
    """The devices of one tile's cells and their states.

    Buffers (saved with the tile, so a resumed run goes on as the uninterrupted one):
    `states` (K, out, in); `counters`: updates so far, the device the single policies
    pulse now, and refreshes so far (aihwkit's current_update_idx, current_device_idx
    and refresh counter).
    """

    states: Tensor
    counters: Tensor
    noisy: Tensor  # with write noise only: the states as the MVMs read them

    def __init__(
        self,
        spec: UnitCellSpec,
        device_spec: DeviceSpec,
        shape: tuple[int, int],
        *,
        io: IOSpec,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        self.spec = spec
        self.io = io  # the refresh reads its devices through the job's forward IO
        self.one_sided = isinstance(spec, OneSidedCellSpec)
        k = 2 if isinstance(spec, OneSidedCellSpec) else spec.devices
        self.units = nn.ModuleList(
            Device(device_spec, shape, generator=generator, device=device) for _ in range(k)
        )
        self.gammas = [1.0, -1.0] if isinstance(spec, OneSidedCellSpec) else spec.gammas()
        first = 0 if isinstance(spec, OneSidedCellSpec) else spec.first_update_idx
        self.register_buffer("states", torch.zeros((k, *shape), device=device))
        self.register_buffer("counters", torch.tensor([0, first, 0], dtype=torch.int64))
        # aihwkit's weight granularity of a vector device: the mean of its devices'
        self.granularity = sum(u.granularity for u in self.devices) / k
        self.dw_min = sum(u.dw_min for u in self.devices) / k
        # each device's write noise (a vector cell's only; the spec refuses it in a pair):
        # updates act on `states`, reads see `noisy`, states + N(0, write_noise^2),
        # redrawn for an element of a device whenever an update touches it there
        self.write_noise = device_spec.write_noise_std * self.devices[0].dw_min
        if self.write_noise:
            self.register_buffer("noisy", torch.zeros((k, *shape), device=device))

    @property
    def devices(self) -> list[Device]:
        """The K devices, one per unit, in the order of `states`."""
        return list(self.units)  # type: ignore[arg-type]  # built from Devices only

    def read(self) -> Tensor:
        """The weight the MVMs use: sum_k gamma_k w_k (aihwkit's reduceToWeights), each
        w_k with its write noise."""
        seen = self.noisy if self.write_noise else self.states
        w = self.gammas[0] * seen[0]
        for gamma, state in zip(self.gammas[1:], seen[1:], strict=True):
            w = w.add_(state, alpha=gamma)
        return w

    def _renoise_(self, k: int, touched: Tensor | None, generator: torch.Generator) -> None:
        """Fresh write noise on device k where `touched` (everywhere when None)."""
        xi = torch.randn(self.states[k].shape, generator=generator, device=generator.device)
        fresh = self.states[k] + self.write_noise * xi.to(self.states.device)
        if touched is None:
            self.noisy[k] = fresh
        else:
            torch.where(touched, fresh, self.noisy[k], out=self.noisy[k])

    def program_(self, w: Tensor, generator: torch.Generator) -> Tensor:
        """Set the cells to w and return the weight read back (aihwkit's onSetWeights):
        a pair gets g+ = max(w, 0), g- = max(-w, 0); a vector cell w on every device
        (single_fixed: on its fixed device only); each clipped to its device's bounds,
        with fresh write noise on every device."""
        if self.one_sided:
            self.states[0] = w.clamp_min(0)
            self.states[1] = (-w).clamp_min(0)
        else:
            fixed = self.spec.update_policy == "single_fixed"  # type: ignore[union-attr]
            for k in range(len(self.gammas)):
                if not fixed or k == int(self.counters[CURRENT]):
                    self.states[k] = w
        for unit, state in zip(self.devices, self.states, strict=True):
            unit.clip_(state)
        if self.write_noise:
            for k in range(len(self.gammas)):
                self._renoise_(k, None, generator)
        return self.read()

    def chosen(self, generator: torch.Generator) -> list[int]:
        """The devices this update pulses (aihwkit's initUpdateCycle): all, or the one
        the policy picks now; a pair pulses both (each with one sign, `apply_`)."""
        policy = "all" if self.one_sided else self.spec.update_policy  # type: ignore[union-attr]
        if policy == "all":
            return list(range(len(self.gammas)))
        k = len(self.gammas)
        if policy == "single_sequential":
            self.counters[CURRENT] = (self.counters[CURRENT] + 1) % k
        elif policy == "single_random":
            u = torch.rand((), generator=generator, device=generator.device)
            self.counters[CURRENT] = min(int(u.item() * k), k - 1)
        return [int(self.counters[CURRENT])]

    def expected_(self, delta: Tensor, generator: torch.Generator) -> None:
        """dW through the devices in the expected mode; a pair takes the positive part
        on g+ and the negative part, as an increase, on g-. `delta` is consumed."""
        if self.one_sided:
            down = delta.neg().clamp_min_(0)
            self.devices[0].expected_update_(self.states[0], delta.clamp_min_(0), generator)
            self.devices[1].expected_update_(self.states[1], down, generator)
            return
        chosen = self.chosen(generator)
        touched = None
        if self.write_noise:  # as often as the |dW|/dw_min pulses it stands for touch it
            chance = delta.abs().mul(1 / self.dw_min)
            touched = (
                counter_uniform(tuple(delta.shape), draw_key(generator), delta.device) < chance
            )
        for k in chosen:
            step = delta if k == chosen[-1] else delta.clone()
            self.devices[k].expected_update_(self.states[k], step, generator)
            if touched is not None:
                self._renoise_(k, touched, generator)

    def pulses_(self, n_up: Tensor, n_down: Tensor, generator: torch.Generator) -> None:
        """Pulse counts (of the weight) through the devices: a pair's up pulses go to g+
        and its down pulses to g- as up pulses (OneSidedRPUDevice::doDenseUpdate); a
        vector cell's to each device it pulses (VectorRPUDevice::doDenseUpdate)."""
        if self.one_sided:
            none = torch.zeros_like(n_up)
            self.devices[0].apply_pulses_(self.states[0], n_up, none, generator)
            self.devices[1].apply_pulses_(self.states[1], n_down, none, generator)
            return
        touched = (n_up + n_down) > 0 if self.write_noise else None
        for k in self.chosen(generator):
            self.devices[k].apply_pulses_(self.states[k], n_up, n_down, generator)
            if touched is not None:
                self._renoise_(k, touched, generator)

    def finish_(self, generator: torch.Generator) -> Tensor:
        """Count the update, refresh a pair when due (OneSidedRPUDevice::
        finishUpdateCycle: after the count, every refresh_every updates) and return
        the weight read back."""
        self.counters[UPDATES] += 1
        spec = self.spec
        every = spec.refresh_every if isinstance(spec, OneSidedCellSpec) else 0
        if every and int(self.counters[UPDATES]) % every == 0:
            self.counters[REFRESHES] += self.refresh_(generator)
        return self.read()

    def refresh_(self, generator: torch.Generator) -> int:
        """OneSidedRPUDevice::refreshWeights: each pair whose larger device over w_max
        passes the upper threshold and whose smaller one passes the lower is reset
        (both devices to their reset value plus N(0, reset_std^2), clipped), and the
        difference |g+ - g-| is written onto the device that held the larger value by
        a pulse train, one per column (x the column's unit vector, d the differences,
        update management and refresh_bit_length). The devices are read column by
        column (one-hot inputs) through the job's forward IO model (aihwkit's
        refresh_forward). Returns the number of pairs refreshed."""
        spec = self.spec
        assert isinstance(spec, OneSidedCellSpec)
        gp, gm = (self._read_columns(state, generator) for state in self.states)
        hi_p = abs(self.devices[0].spec.w_max)
        hi_m = abs(self.devices[1].spec.w_max)  # one-sided: both read against w_max
        up, lo = spec.refresh_upper_thres, spec.refresh_lower_thres
        plus = gp > gm
        due = torch.where(
            plus, (gp / hi_p > up) & (gm / hi_m > lo), (gp / hi_p > lo) & (gm / hi_m > up)
        )
        count = int(due.sum())
        if not count:
            return 0
        diff = (gp - gm).abs()
        for unit, state in zip(self.devices, self.states, strict=True):
            _reset_(unit, state, due, generator)
        for k, side in enumerate((plus, ~plus)):
            self._write_(k, torch.where(due & side, diff, 0.0), spec.refresh_bit_length, generator)
        return count

    def _read_columns(self, state: Tensor, generator: torch.Generator) -> Tensor:
        """One device's states as read by forward passes of the unit vectors (exact
        under perfect IO)."""
        one_hot = torch.eye(state.shape[1], device=state.device)
        return analog_mvm(state, one_hot, self.io, generator).T

    def _write_(self, k: int, amount: Tensor, bit_length: int, generator: torch.Generator) -> None:
        """Add `amount` (>= 0) to device k by pulse trains, one sample per column that
        has any (aihwkit's refresh_pwu: x = e_j, d = the column, lr 1)."""
        cols = torch.nonzero(amount.gt(0).any(dim=0)).squeeze(1)
        if not len(cols):
            return
        x = torch.eye(amount.shape[1], device=amount.device)[cols]
        d = -amount.T[cols]  # W - lr d^T x adds the amount
        unit = self.devices[k]
        n_up, _ = pulse_train_counts(
            x,
            d,
            lr=1.0,
            dw_min=unit.granularity,
            bit_length=bit_length,
            update_management=True,
            generator=generator,
        )
        unit.apply_pulses_(self.states[k], n_up, torch.zeros_like(n_up), generator)

    def saturation_parts(self) -> list[tuple[Device, Tensor]]:
        """Each device with its state, for the tile's saturation and near-bound figures."""
        return list(zip(self.devices, self.states, strict=True))


def _reset_(unit: Device, state: Tensor, where: Tensor, generator: torch.Generator) -> None:
    """PulsedRPUDevice::resetAtIndices on the elements `where`: the element's reset value
    (`reset_bias`; 0 for a family without reset fields) plus N(0, reset_std^2), clipped
    to its bounds."""
    value = getattr(unit, "reset_bias", None)
    target = torch.zeros_like(state) if value is None else value.clone()
    std = float(getattr(unit.spec, "reset_std", 0.0))
    if std:
        noise = torch.randn(state.shape, generator=generator, device=generator.device)
        target.add_(noise.to(state.device), alpha=std)
    unit.clip_(target)
    torch.where(where, target, state, out=state)
