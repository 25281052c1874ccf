"""The analog tile: a crossbar holding a weight matrix as device states.

Forward `W x` and backward `W^T d` go through the IO model; the weights change
only through the device (three update modes, all vectorised over the tile and
the batch). Backward signals and inputs of recent micro-batches wait in
`pending` until the algorithm updates the tile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from aimc_engine import pulsed
from aimc_engine.devices import Device, symmetric_parts
from aimc_engine.mvm import analog_mvm
from aimc_engine.pulses import LazyRows, pulse_train_counts, rounded_counts
from aimc_engine.rng import counter_uniform, draw_key
from aimc_engine.unit_cells import UnitCell
from aimc_spec.spec import AnalogSpec, IOSpec, parse_device


@dataclass(frozen=True)
class TileConfig:
    """What every tile of a run shares: the analog spec, generators and torch device."""

    analog: AnalogSpec
    init_generator: torch.Generator  # initial weights, d2d draws
    noise_generator: torch.Generator  # pulses, cycle-to-cycle and IO noise
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def digital(self) -> TileConfig:
        """The same run's config for a digital layer: ideal device, perfect IO, no analog."""
        return replace(self, analog=DIGITAL)


# A digital weight layer is a tile with an ideal device and exact MVMs, updated exactly:
# one code path for every layer, so pipelines treat analog and digital weights alike.
DIGITAL = AnalogSpec(enabled=False, device=parse_device(model="ideal"), io=IOSpec(perfect=True))


class AnalogTile(nn.Module):
    """An (out, in) crossbar; weights and device parameters are buffers (saved, not trained)."""

    weight: Tensor
    hidden: Tensor
    pulses: Tensor  # device pulses so far, as sum |change of state| / granularity
    cell: UnitCell | None  # several devices per weight (analog.unit_cell), else None

    def __init__(
        self,
        out_features: int,
        in_features: int,
        config: TileConfig,
        *,
        init_bound: float | None = None,
    ) -> None:
        super().__init__()
        shape = (out_features, in_features)
        self.analog = config.analog
        # bound management exists for the forward MVM only (aihwkit forces it off backward)
        self.backward_io = config.analog.io.model_copy(update={"bound_management": False})
        self.noise_generator = config.noise_generator
        # counted for the energy estimate (aimc_spec/energy.py); only read, never fed back
        self.register_buffer("pulses", torch.zeros((), dtype=torch.float64, device=config.device))
        self.cell = None
        if config.analog.unit_cell is not None:
            self._init_cell(shape, config, init_bound)
            return
        self.device_model = Device(
            config.analog.device, shape, generator=config.init_generator, device=config.device
        )
        # aihwkit's write noise: updates act on a hidden weight, the MVMs read it plus
        # N(0, write_noise^2), redrawn for an element whenever an update touches it
        self.write_noise = config.analog.device.write_noise_std * self.device_model.dw_min
        bound = 1 / math.sqrt(in_features) if init_bound is None else init_bound
        w = torch.empty(shape).uniform_(-bound, bound, generator=config.init_generator)
        w = self.device_model.clip_(w.to(config.device))
        if self.write_noise:
            self.register_buffer("hidden", w)
            self.register_buffer("weight", self._read_noise(w, config.init_generator))
        else:
            self.register_buffer("weight", w)

    def _init_cell(
        self, shape: tuple[int, int], config: TileConfig, init_bound: float | None
    ) -> None:
        """A tile of unit cells: the cell's devices drawn, then the initial weights
        (uniform, as for one device) programmed into them and read back."""
        assert config.analog.unit_cell is not None
        self.cell = UnitCell(
            config.analog.unit_cell,
            config.analog.device,
            shape,
            io=config.analog.io,
            generator=config.init_generator,
            device=config.device,
        )
        self.write_noise = 0.0  # a cell keeps its devices' write noise itself
        bound = 1 / math.sqrt(shape[1]) if init_bound is None else init_bound
        w = torch.empty(shape).uniform_(-bound, bound, generator=config.init_generator)
        self.register_buffer(
            "weight", self.cell.program_(w.to(config.device), config.init_generator)
        )

    @property
    def state(self) -> Tensor:
        """The device state updates act on: the hidden weight under write noise, else W."""
        return self.hidden if self.write_noise else self.weight

    def set_weights(self, w: Tensor) -> None:
        """Program the tile to w (clipped); under write noise every element gets fresh noise."""
        if self.cell is not None:
            self.weight = self.cell.program_(w.detach().clone(), self.noise_generator)
            return
        w = self.device_model.clip_(w.detach().clone(memory_format=torch.contiguous_format))
        if self.write_noise:
            self.hidden = w
            self.weight = self._read_noise(w, self.noise_generator)
        else:
            self.weight = w

    def _read_noise(self, hidden: Tensor, generator: torch.Generator) -> Tensor:
        """hidden + N(0, write_noise^2), elementwise."""
        xi = torch.randn(hidden.shape, generator=generator, device=generator.device)
        return hidden + self.write_noise * xi.to(hidden.device)

    def _rewrite_(self, touched: Tensor) -> None:
        """Redraw the write noise of the elements an update touched; the rest keep theirs."""
        fresh = self._read_noise(self.hidden, self.noise_generator)
        torch.where(touched, fresh, self.weight, out=self.weight)

    @property
    def granularity(self) -> float:
        """aihwkit's weight granularity of the tile's device, or of its unit cell (the
        mean of the cell's devices'): the step transfers and mixed precision count in."""
        return self.cell.granularity if self.cell is not None else self.device_model.granularity

    @property
    def shape(self) -> tuple[int, int]:
        return (self.weight.shape[0], self.weight.shape[1])

    def forward_mvm(
        self, x: Tensor, weight: Tensor | None = None, *, bias: Tensor | None = None
    ) -> Tensor:
        """y = W x (+ a digital bias after the ADC) through the IO model; x (N, in) -> (N, out)."""
        w = self.weight if weight is None else weight
        return analog_mvm(w, x, self.analog.io, self.noise_generator, bias=bias)

    def backward_mvm(self, d: Tensor, weight: Tensor | None = None) -> Tensor:
        """d_x = W^T d through the IO model (no bound management), with the tile's current
        weights; d (N, out)."""
        w = self.weight if weight is None else weight
        return analog_mvm(w.T, d, self.backward_io, self.noise_generator)

    def update(self, x: Tensor | LazyRows, d: Tensor, lr: float) -> None:
        """W <- W - lr * d^T x through the device (`_update`), its pulses counted."""
        before = None if self._counts_itself() else self._written_copy()
        self._count_pulses(self._update(x, d, lr), before)

    def update_from_gradient(self, grad: Tensor, lr: float) -> None:
        """W <- W - lr * grad through the device (`_update_from_gradient`), its pulses
        counted; grad = d^T x (out, in), consumed."""
        before = None if self._counts_itself() else self._written_copy()
        self._count_pulses(self._update_from_gradient(grad, lr), before)

    def _counts_itself(self) -> bool:
        """Whether the update sums its own |change| as it goes (the pulsed kernels on the
        tile's own device, the fused rounded chain), so that no copy of the state is
        taken before it: on a small tile the copy cost as much as the update."""
        if self.cell is not None:
            return False
        mode = self.analog.update
        fused = mode == "rounded" and not self.write_noise and self.device_model.fused_rounding
        return mode == "pulsed" or fused

    def _written_copy(self) -> Tensor:
        """A copy of what updates act on: the cell's devices, or the (hidden) weight."""
        return (self.cell.states if self.cell is not None else self.state).clone()

    def _count_pulses(self, moved: Tensor | float | None, before: Tensor | None) -> None:
        """The pulses an update took, estimated as sum |change| / granularity (a pulse
        moves a device by about its granularity; pulses that cancel within one update,
        or that a bound swallows, are not seen): the update's own sum (moved), or the
        change since the copy `before`."""
        if before is not None:
            now = self.cell.states if self.cell is not None else self.state
            moved = before.sub_(now).abs_().sum(dtype=torch.float64)  # the copy is spent
        assert moved is not None, "an update that counts itself returned no sum"
        self.pulses += moved / self.granularity

    def _update(self, x: Tensor | LazyRows, d: Tensor, lr: float) -> Tensor | float | None:
        """W <- W - lr * d^T x through the device, in the spec's update mode; returns sum
        |change| where the update summed it (`_counts_itself`), else None.

        x (N, in) and d (N, out) are the rows of the micro-batches being applied
        (N = samples, or samples x positions for a convolution, whose input rows may
        come as LazyRows for the pulsed mode). Only the pulsed mode needs the rows; the
        others take their product (`update_from_gradient`).
        """
        if self.cell is not None and self.analog.update == "pulsed":
            n_up, n_down = pulse_train_counts(
                x,
                d,
                lr=lr,
                dw_min=self.cell.granularity,
                bit_length=self.analog.bit_length,
                update_management=self.analog.update_management,
                generator=self.noise_generator,
            )
            self.cell.pulses_(n_up, n_down, self.noise_generator)
            self.weight.copy_(self.cell.finish_(self.noise_generator))
            return None
        if self.analog.update == "pulsed":
            return self._pulsed(x, d, lr)
        if isinstance(x, LazyRows):
            raise ValueError("update: lazy rows are for the pulsed mode; pass d^T x")
        return self._update_from_gradient(d.T @ x, lr)

    def _pulsed(self, x: Tensor | LazyRows, d: Tensor, lr: float) -> Tensor | float:
        """The pulsed mode on the tile's own device, the whole update in one or two C calls
        (pulsed.py, pulsed_curve.py); returns sum |change| of the state."""
        how = pulsed.PulsedUpdate(
            lr,
            self.analog.bit_length,
            self.analog.update_management,
            self.weight if self.write_noise else None,
            self.write_noise,
        )
        return pulsed.pulsed_update_(self.device_model, self.state, x, d, how, self.noise_generator)

    def _update_from_gradient(self, grad: Tensor, lr: float) -> Tensor | None:
        """W <- W - lr * grad through the device, grad = d^T x (out, in), consumed: the
        expected and rounded modes, which need nothing but this product. Returns sum
        |change| where the fused rounded chain summed it, else None."""
        mode = self.analog.update
        if mode == "pulsed":
            raise ValueError("update: the pulsed mode needs the rows x and d, not d^T x")
        if self.cell is not None:
            self._cell_update(grad.mul_(-lr))
            return None
        dev = self.device_model
        if self._counts_itself():  # rounded on a fused device: one chain, its own sum
            return dev.rounded_update_(self.state, grad, lr, self.noise_generator)
        delta = grad.mul_(-lr)
        if mode == "expected":
            touched = None
            if self.write_noise:  # as often as the |dW|/dw_min pulses it stands for touch it
                chance = delta.abs().mul_(1 / dev.dw_min)
                key = draw_key(self.noise_generator)
                touched = counter_uniform(tuple(delta.shape), key, delta.device) < chance
            dev.expected_update_(self.state, delta, self.noise_generator)
            if touched is not None:
                self._rewrite_(touched)
            return None
        n_up, n_down = rounded_counts(delta, dw_min=dev.dw_min, generator=self.noise_generator)
        self._apply_pulses(n_up, n_down)
        return None

    def _cell_update(self, delta: Tensor) -> None:
        """dW through the unit cell, expected or rounded (to whole pulses of the cell's
        mean dw_min), then the cell's end of update (refresh) and the weight read back."""
        assert self.cell is not None
        if self.analog.update == "expected":
            self.cell.expected_(delta, self.noise_generator)
        else:
            n_up, n_down = rounded_counts(
                delta, dw_min=self.cell.dw_min, generator=self.noise_generator
            )
            self.cell.pulses_(n_up, n_down, self.noise_generator)
        self.weight.copy_(self.cell.finish_(self.noise_generator))

    def _apply_pulses(self, n_up: Tensor, n_down: Tensor) -> None:
        """Pulse counts through the device; under write noise touched elements get new noise."""
        touched = (n_up + n_down) > 0 if self.write_noise else None
        self.device_model.apply_pulses_(self.state, n_up, n_down, self.noise_generator)
        if touched is not None:
            self._rewrite_(touched)

    def exact_update(self, grad: Tensor, lr: float) -> None:
        """W <- W - lr * grad in floating point, grad = d^T x (digital layers, and the
        `sgd` algorithm). Under write noise the hidden weight takes the same exact step
        (no new noise)."""
        self.weight.add_(grad, alpha=-lr)
        if self.write_noise:
            self.hidden.add_(grad, alpha=-lr)

    def saturation(self) -> float:
        """max_ij (G/sqrt(F))^2, the theory's saturation term for this tile."""
        terms = []
        for dev, state in self._device_states():
            f, g = symmetric_parts(*dev.response(state))
            terms.append(float((g.square() / f.clamp_min(1e-12)).max()))
        return max(terms)

    def near_bound_fraction(self, margin: float = 0.05) -> float:
        """Share of weights within `margin` of the range (w_max - w_min) from a bound."""
        shares = []
        for dev, state in self._device_states():
            edge = margin * (dev.w_max - dev.w_min)
            near = (state >= dev.w_max - edge) | (state <= dev.w_min + edge)
            shares.append(float(near.float().mean()))
        return sum(shares) / len(shares)

    def _device_states(self) -> list[tuple[Device, Tensor]]:
        """Each device of the tile with its state: one, or a unit cell's K."""
        if self.cell is not None:
            return self.cell.saturation_parts()
        return [(self.device_model, self.state)]
