"""Models (mlp, cnn, resnet) as an ordered list of units a pipeline can cut into stages.

Each weight layer is analog or digital as `analog.layers` says, counted in
construction order (`weight_layers`); digital ones are tile layers with an
ideal device and exact MVMs (`TileConfig.digital`). Every model is a `LayeredNet`: its
`units` run one after another, so stage s is a contiguous run of units.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from aimc_engine.layers import AnalogConv2d, AnalogLayer, AnalogLinear
from aimc_engine.tiles import TileConfig
from aimc_spec.fit import fit_problem
from aimc_spec.spec import JobSpec

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}


@dataclass
class LayerFactory:
    """Makes weight layers in order, analog or digital by their index."""

    spec: JobSpec
    num_weight_layers: int
    config: TileConfig
    made: int = 0

    def _analog_next(self) -> bool:
        i = self.made
        self.made += 1
        analog = self.spec.analog
        if not analog.enabled:
            return False
        if analog.layers == "all":
            return True
        if analog.layers == "last":
            return i == self.num_weight_layers - 1
        return i in analog.layers

    def _config_next(self) -> TileConfig:
        return self.config if self._analog_next() else self.config.digital()

    def linear(self, n_in: int, n_out: int) -> AnalogLinear:
        return AnalogLinear(n_in, n_out, self._config_next())

    def conv(self, c_in: int, c_out: int, k: int, *, stride: int = 1) -> AnalogConv2d:
        config = self._config_next()
        return AnalogConv2d(c_in, c_out, k, config, stride=stride, padding=k // 2)


class ResidualBlock(nn.Module):
    """act(conv3x3(act(conv3x3(x))) + shortcut(x)); shortcut is a 1x1 conv on a shape change."""

    def __init__(
        self, make: LayerFactory, c_in: int, c_out: int, stride: int, act: type[nn.Module]
    ) -> None:
        super().__init__()
        self.conv1 = make.conv(c_in, c_out, 3, stride=stride)
        self.conv2 = make.conv(c_out, c_out, 3)
        self.shortcut = make.conv(c_in, c_out, 1, stride=stride) if stride != 1 else None
        self.act = act()

    def forward(self, x: Tensor) -> Tensor:
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.act(self.conv2(self.act(self.conv1(x))) + skip)


class LayeredNet(nn.Module):
    """Units run in order; `weight_layers` lists the weight layers in spec index order."""

    def __init__(self, units: list[nn.Module]) -> None:
        super().__init__()
        self.units = nn.ModuleList(units)

    def forward(self, x: Tensor) -> Tensor:
        for unit in self.units:
            x = unit(x)
        return x

    @property
    def weight_layers(self) -> list[AnalogLayer]:
        """Every weight layer, analog or digital, in spec index order."""
        return tile_layers(self)

    @property
    def analog_layers(self) -> list[AnalogLayer]:
        return [m for m in tile_layers(self) if m.is_analog]

    def digital_parameters(self) -> list[nn.Parameter]:
        """Parameters trained by exact SGD: the biases."""
        return [p for p in self.parameters() if p.requires_grad]


def tile_layers(module: nn.Module) -> list[AnalogLayer]:
    """The weight layers inside a module (a model, a unit, a stage), in order."""
    return [m for m in module.modules() if isinstance(m, AnalogLayer)]


def _image_shape(input_shape: tuple[int, ...], kind: str) -> tuple[int, int, int]:
    if len(input_shape) == 3:
        return input_shape  # type: ignore[return-value]
    raise ValueError(
        f"model.kind: {kind!r} needs image inputs (channels, height, width); "
        f"this dataset gives {input_shape}"
    )


UnitBuilder = Callable[[LayerFactory], nn.Module]


def _unit_builders(spec: JobSpec, input_shape: tuple[int, ...], classes: int) -> list[UnitBuilder]:
    """One builder per unit of the network, in order: a stage builds only its own units."""
    m = spec.model
    problem = fit_problem(spec, input_shape)  # the API checked the same at submit
    if problem:
        raise ValueError(f"{problem[0]}: {problem[1]}")
    act = ACTIVATIONS[m.activation]
    builders: list[UnitBuilder] = []
    if m.kind == "mlp":
        widths = [math.prod(input_shape), *m.hidden, classes]
        for i in range(len(widths) - 1):

            def mlp_unit(make: LayerFactory, i: int = i) -> nn.Module:
                layers: list[nn.Module] = [nn.Flatten()] if i == 0 else []
                layers.append(make.linear(widths[i], widths[i + 1]))
                if i < len(widths) - 2:
                    layers.append(act())
                return nn.Sequential(*layers)

            builders.append(mlp_unit)
    elif m.kind == "cnn":
        c, h, w = _image_shape(input_shape, m.kind)
        for ch in m.channels:

            def conv_unit(make: LayerFactory, c: int = c, ch: int = ch) -> nn.Module:
                return nn.Sequential(make.conv(c, ch, 5), act(), nn.MaxPool2d(2))

            builders.append(conv_unit)
            c, h, w = ch, h // 2, w // 2
        flat = c * h * w
        builders.append(lambda make: nn.Sequential(nn.Flatten(), make.linear(flat, m.fc), act()))
        builders.append(lambda make: nn.Sequential(make.linear(m.fc, classes)))
    else:
        c, _, _ = _image_shape(input_shape, m.kind)
        builders.append(lambda make: nn.Sequential(make.conv(c, m.channels[0], 3), act()))
        c_in = m.channels[0]
        for i, ch in enumerate(m.channels):

            def block(make: LayerFactory, c_in: int = c_in, ch: int = ch, i: int = i) -> nn.Module:
                return ResidualBlock(make, c_in, ch, 1 if i == 0 else 2, act)

            builders.append(block)
            c_in = ch
        last = c_in
        builders.append(
            lambda make: nn.Sequential(
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), make.linear(last, classes)
            )
        )
    return builders


def build_model(
    spec: JobSpec, input_shape: tuple[int, ...], classes: int, config: TileConfig
) -> LayeredNet:
    """The network the spec describes, for inputs of `input_shape` (without batch), every
    tile drawing from `config`'s generators."""
    m = spec.model
    make = LayerFactory(spec, m.num_weight_layers, config)
    units = [build(make) for build in _unit_builders(spec, input_shape, classes)]
    if make.made != m.num_weight_layers:
        raise RuntimeError(f"built {make.made} weight layers, spec counts {m.num_weight_layers}")
    return LayeredNet(units)


def build_stage(
    spec: JobSpec,
    input_shape: tuple[int, ...],
    classes: int,
    units: range,
    config: TileConfig,
) -> nn.Sequential:
    """Only the units `units` of the network (one pipeline stage), drawing from the stage's
    own `config`. Submodules are named by their unit's index in the whole network, so
    `units.<name>` of a stage's state_dict keys is the whole model's key."""
    m = spec.model
    counts = m.layers_per_unit
    make = LayerFactory(spec, m.num_weight_layers, config, made=sum(counts[: units.start]))
    builders = _unit_builders(spec, input_shape, classes)
    stage = nn.Sequential(OrderedDict((str(i), builders[i](make)) for i in units))
    if make.made != sum(counts[: units.stop]):
        raise RuntimeError(f"stage of units {units} built {make.made} weight layers")
    return stage


def assemble(stages: Sequence[nn.Module]) -> LayeredNet:
    """The whole network from its stages, in order (the modules are shared, not copied)."""
    return LayeredNet([unit for stage in stages for unit in stage.children()])
