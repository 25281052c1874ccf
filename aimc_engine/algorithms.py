"""Training algorithms: how recorded gradients become weight changes.

- sgd: exact floating-point update W <- W - lr * grad, also on analog tiles.
- analog_sgd: the update -lr * d^T x goes through the device (Analog SGD).
- tiki_taka: gradients go to a fast array P; every `transfer_every` updates a
  few columns of P are read and written into the slow array W with the analog
  rule at rate transfer_lr (times lr by default). P is read relative to a
  reference programmed to its symmetric point (analog-model.md section 6).
- ttv2: Tiki-Taka whose reads of P go into a digital buffer H; W takes whole steps
  where H passes a threshold (ttv2.py).
- chopped_ttv2: TTv2 whose P takes the gradient under random sign flips (choppers),
  undone at the read, so P's own drift averages out (chopped_ttv2.py).
- agad: Chopped TTv2 read against a dynamic reference, the running mean of P's reads
  in the previous chopper period (agad.py).
- residual_learning: Tiki-Taka's two arrays, with the whole of P written into W at
  rate beta every transfer_every updates (residual_learning.py; section 6c).
- mixed_precision: the update accumulates digitally in chi and reaches the device in
  whole multiples of a granularity (mixed_precision.py; section 6b).
Digital parameters (biases, digital layers) always take the exact step.
"""

from __future__ import annotations

import torch
from torch import nn

from aimc_engine import ttv2
from aimc_engine.agad import AGAD
from aimc_engine.chopped_ttv2 import ChoppedTTv2, ChopperBase
from aimc_engine.layers import AnalogLayer
from aimc_engine.mixed_precision import MixedPrecision
from aimc_engine.models import tile_layers
from aimc_engine.mvm import analog_mvm
from aimc_engine.residual_learning import transfer as residual_transfer
from aimc_engine.tiles import AnalogTile, TileConfig
from aimc_spec.spec import (
    ChopperSpec,
    JobSpec,
    ResidualLearningSpec,
    TikiTakaSpec,
    TTv2Spec,
)


class Algorithm:
    """Applies one update to the weight layers and biases inside `module` (a model or a
    pipeline stage) from the gradients recorded since its last update."""

    def __init__(self, spec: JobSpec, module: nn.Module, config: TileConfig) -> None:
        self.kind = spec.optimizer.algorithm
        # TTv2 is Tiki-Taka with more fields: one code path reads them
        opt = spec.optimizer
        self.tiki_taka = opt.ttv2 if self.kind == "ttv2" else opt.tiki_taka
        self.residual = spec.optimizer.residual_learning
        self.chopped = spec.optimizer.chopped_ttv2
        self.agad = spec.optimizer.agad
        self.transfer_io = spec.analog.io.model_copy(
            update={"noise_management": False, "bound_management": False}
        )
        self.updates = 0
        # walked once: listing a model's modules costs more than a small layer's update
        self.layers = tile_layers(module)
        self.parameters = [p for p in module.parameters() if p.requires_grad]
        # an algorithm of its own module: it keeps its state on the layers it attaches to
        self.rule = self._rule(spec)
        if self.kind in ("tiki_taka", "ttv2", "residual_learning", "chopped_ttv2", "agad"):
            for layer in self.layers:
                if layer.is_analog:
                    self._add_fast_array(layer, config)
                    if self.kind == "ttv2":
                        ttv2.attach(layer)
        if self.rule is not None:
            for layer in self.layers:
                if layer.is_analog:
                    self.rule.attach(layer)
        for layer in self.layers:  # pulse trains need the rows; every other update d^T x
            layer.gradient_only = not self._needs_rows(layer)

    def _rule(self, spec: JobSpec) -> MixedPrecision | ChopperBase | None:
        if self.kind == "mixed_precision":
            return MixedPrecision(spec.optimizer.mixed_precision)
        if self.kind == "chopped_ttv2":
            return ChoppedTTv2(spec.optimizer.chopped_ttv2, self.transfer_io)
        if self.kind == "agad":
            return AGAD(spec.optimizer.agad, self.transfer_io)
        return None

    def _needs_rows(self, layer: AnalogLayer) -> bool:
        analog = self.kind != "sgd" and layer.is_analog
        if analog and self.rule is not None:
            return self.rule.needs_rows(layer)
        return analog and layer.tile.analog.update == "pulsed"

    def _add_fast_array(self, layer: AnalogLayer, config: TileConfig) -> None:
        """Give the layer its fast array P, starting at 0 or, with a reference, at its
        symmetric point, which is then kept as P_ref (P is read as P - P_ref)."""
        fast = AnalogTile(*layer.tile.shape, config, init_bound=0.0)
        part: TikiTakaSpec | ResidualLearningSpec | ChopperSpec = self.tiki_taka
        if self.kind == "residual_learning":
            part = self.residual
        elif self.kind in ("chopped_ttv2", "agad"):
            part = self.chopped if self.kind == "chopped_ttv2" else self.agad
        if part.reference == "symmetric_point":
            fast.set_weights(fast.device_model.alternating_pulse_point())
            layer.fast_ref = fast.state.clone()
        layer.fast = fast
        # Chopped TTv2's and AGAD's MVMs read W alone (aihwkit's gamma 0; P is chopped)
        layer.fast_gamma = 0.0 if isinstance(part, ChopperSpec) else part.gamma

    @torch.no_grad()
    def step(self, lr: float, *, scale: float = 1.0) -> None:
        """One update with learning rate lr; `scale` multiplies the recorded gradients
        (1/B when B micro-batches' gradients are averaged)."""
        for p in self.parameters:
            if p.grad is not None:
                p.add_(p.grad, alpha=-lr * scale)
                p.grad = None
        for layer in self.layers:
            if self.kind == "sgd" or not layer.is_analog:
                layer.tile.exact_update(layer.take_gradient(scale), lr)
                continue
            if self.rule is not None:
                self.rule.update(layer, lr, scale, self.updates)
                continue
            tile = layer.tile if self.kind == "analog_sgd" else layer.fast
            assert tile is not None  # the array P: created in __init__ for every analog layer
            if self._needs_rows(layer):  # pulse trains need every row's x and d
                x, d = layer.take_pulse_rows()
                tile.update(x, d if scale == 1.0 else d * scale, lr)
            else:  # the other modes need only d^T x (for a convolution: no im2col)
                tile.update_from_gradient(layer.take_gradient(scale), lr)
            if self.kind in ("tiki_taka", "ttv2"):
                self._transfer(layer, lr)
            elif self.kind == "residual_learning":
                residual_transfer(layer, self.residual, self.updates, self.transfer_io)
        self.updates += 1

    def _transfer(self, layer: AnalogLayer, lr: float) -> None:
        """Every transfer_every updates: columns of P (read through the IO) into W."""
        fast = layer.fast
        assert fast is not None
        tt = self.tiki_taka
        if (self.updates + 1) % tt.transfer_every:
            return
        in_f = fast.shape[1]
        n_cols = min(tt.transfer_columns, in_f)
        transfers = (self.updates + 1) // tt.transfer_every - 1
        first = (transfers * n_cols) % in_f
        cols = [(first + c) % in_f for c in range(n_cols)]
        p_cols = fast.weight[:, cols]  # (out, n_cols)
        if layer.fast_ref is not None:
            p_cols = p_cols - layer.fast_ref[:, cols]  # a differential read against P_ref
        unit = torch.eye(n_cols, dtype=p_cols.dtype, device=p_cols.device)
        # (n_cols, out) = columns of P, read without noise or bound management (aihwkit's
        # transfer reads)
        read = analog_mvm(p_cols, unit, self.transfer_io, fast.noise_generator)
        # W[:, cols] += rate * read: an update -rate * d^T x with d = -read, x = unit columns
        x = torch.zeros(n_cols, in_f, dtype=read.dtype, device=read.device)
        x[range(n_cols), cols] = 1.0
        rate = tt.transfer_lr * lr if tt.scale_transfer_lr else tt.transfer_lr
        if isinstance(tt, TTv2Spec):  # into the digital buffer, whole steps into W
            ttv2.buffered_write(layer, tt, cols, x, read, rate)
        else:
            layer.tile.update(x, -read, rate)
