"""Device presets: aihwkit's published device fits (simulator/presets/devices.py), as data.

Torch-free: the job spec expands a preset into explicit device fields, and the
API process imports this module. Each entry names the aihwkit class it mirrors;
the field mapping (ours = aihwkit's) is: dw_min = dw_min, c2c_noise = dw_min_std
(c2c_mode = the class's noise form), d2d_variation = dw_min_dtod, d2d_w_min /
d2d_w_max = w_min_dtod / w_max_dtod, d2d_up_down = up_down_dtod, d2d_gamma =
gamma_up_dtod = gamma_down_dtod, write_noise_std = write_noise_std (analog-model.md
section 7). Not modelled: the capacitor's leakage (lifetime 1e6, lifetime_dtod 0.3).

The families with every field of their aihwkit 1.2 class (exp_step_noise for pcm,
softbounds_reference for the ReRAM arrays) also take d2d_log_normal =
dw_min_dtod_log_normal, d2d_reset = reset_dtod, d2d_slope_up / d2d_slope_down =
slope_up_dtod / slope_down_dtod, c2c_add / c2c_slope = dw_min_std_add /
dw_min_std_slope, and aihwkit's own names for the rest; a preset sets each of them,
to aihwkit's PulsedDevice default where the preset class does not.
"""

from typing import Any

# PulsedDevice's defaults (aihwkit 1.2 simulator/configs/devices.py) for the fields the
# preset classes below leave alone
_PULSED = {
    "d2d_log_normal": False,
    "enforce_consistency": True,
    "corrupt_devices_prob": 0.0,
    "corrupt_devices_range": 0.1,
    "reset": 0.0,
    "d2d_reset": 0.0,
    "reset_std": 0.01,
}
# SoftBoundsReferenceDevice's own fields, at its defaults
_REFERENCE = {
    "d2d_slope_up": 0.0,
    "d2d_slope_down": 0.0,
    "reference_mean": 0.0,
    "reference_std": 0.0,
    "subtract_symmetry_point": False,
}

PRESETS: dict[str, dict[str, Any]] = {
    # ReRamESPresetDevice(ExpStepDevice): the noise of ExpStep is always multiplicative
    "reram_es": {
        "model": "exp_step",
        "exp_step": {
            "A_up": -1.18445,
            "A_down": -0.081404,
            "gamma_up": 5.0,
            "gamma_down": 5.0,
            "a": -0.5,
            "b": -0.5,
        },
        "dw_min": 0.00135,
        "w_min": -1.0,
        "w_max": 1.0,
        "up_down": 0.259359,
        "c2c_noise": 5.0,
        "c2c_mode": "multiplicative",
        "d2d_variation": 0.2,
        "d2d_w_min": 0.3,
        "d2d_w_max": 0.3,
        "d2d_up_down": 0.05,
        "write_noise_std": 75.0,
    },
    # ReRamSBPresetDevice(SoftBoundsReferenceDevice, mult_noise=False); its bound spreads are
    # given in weight units (0.3) and so are 0.3/0.75 and 0.3/1.25 relative to each bound
    "reram_sb": {
        "model": "softbounds",
        "dw_min": 0.002,
        "w_min": -0.75,
        "w_max": 1.25,
        "up_down": 0.0,
        "c2c_noise": 3.75,
        "c2c_mode": "additive",
        "d2d_variation": 0.3,
        "d2d_w_min": 0.4,
        "d2d_w_max": 0.24,
        "d2d_up_down": 0.01,
        "write_noise_std": 56.0,
    },
    # CapacitorPresetDevice(LinearStepDevice, mult_noise=False); leakage not modelled
    "capacitor": {
        "model": "linear",
        "gamma": 0.05,
        "gamma_down": 0.05,
        "dw_min": 0.005,
        "w_min": -1.0,
        "w_max": 1.0,
        "up_down": 0.0,
        "c2c_noise": 0.3,
        "c2c_mode": "additive",
        "d2d_variation": 0.1,
        "d2d_w_min": 0.07,
        "d2d_w_max": 0.07,
        "d2d_up_down": 0.06,
        "d2d_gamma": 0.01,
        "write_noise_std": 0.0,
    },
    # EcRamPresetDevice(LinearStepDevice), multiplicative noise (LinearStep's default)
    "ecram": {
        "model": "linear",
        "gamma": 0.1153,
        "gamma_down": 0.5085,
        "dw_min": 0.002,
        "w_min": -0.8276,
        "w_max": 1.1724,
        "up_down": 0.0,
        "c2c_noise": 0.3,
        "c2c_mode": "multiplicative",
        "d2d_variation": 0.1,
        "d2d_w_min": 0.05,
        "d2d_w_max": 0.05,
        "d2d_up_down": 0.01,
        "d2d_gamma": 0.05,
        "write_noise_std": 0.0,
    },
    # EcRamMOPresetDevice(LinearStepDevice): metal-oxide ECRAM
    "ecram_mo": {
        "model": "linear",
        "gamma": 0.4152,
        "gamma_down": 0.7342,
        "dw_min": 2.8214e-4,
        "w_min": -0.8286,
        "w_max": 1.1714,
        "up_down": 0.0,
        "c2c_noise": 2.0,
        "c2c_mode": "multiplicative",
        "d2d_variation": 0.1,
        "d2d_w_min": 0.05,
        "d2d_w_max": 0.05,
        "d2d_up_down": 0.01,
        "d2d_gamma": 0.05,
        "write_noise_std": 0.0,
    },
    # IdealizedPresetDevice(ConstantStepDevice): ConstantStep's noise is always multiplicative
    "idealized": {
        "model": "constant_step",
        "dw_min": 2e-4,
        "w_min": -1.0,
        "w_max": 1.0,
        "up_down": 0.0,
        "c2c_noise": 0.3,
        "c2c_mode": "multiplicative",
        "d2d_variation": 0.3,
        "d2d_w_min": 0.3,
        "d2d_w_max": 0.3,
        "d2d_up_down": 0.0,
        "write_noise_std": 0.0,
    },
    # GokmenVlasovPresetDevice(ConstantStepDevice)
    "gokmen_vlasov": {
        "model": "constant_step",
        "dw_min": 0.0016,
        "w_min": -1.0,
        "w_max": 1.0,
        "up_down": 0.0,
        "c2c_noise": 0.3,
        "c2c_mode": "multiplicative",
        "d2d_variation": 0.3,
        "d2d_w_min": 0.3,
        "d2d_w_max": 0.3,
        "d2d_up_down": 0.01,
        "write_noise_std": 0.0,
    },
    # PCMPresetDevice(ExpStepDevice): one-sided (w_min 0), ExpStep's complex noise
    # (dw_min_std_add, dw_min_std_slope) and a reset value with its spread
    "pcm": {
        **_PULSED,
        "model": "exp_step_noise",
        "exp_step": {
            "A_up": -27.235,
            "A_down": -2.235,
            "gamma_up": 2.5,
            "gamma_down": 2.5,
            "a": -1.0,
            "b": 0.0,
        },
        "dw_min": 0.01,
        "w_min": 0.0,
        "w_max": 2.0,
        "up_down": 0.0,
        "c2c_noise": 0.6,
        "c2c_mode": "multiplicative",
        "c2c_add": 0.042,
        "c2c_slope": 0.108,
        "d2d_variation": 0.2,
        "d2d_w_min": 0.0,
        "d2d_w_max": 0.1,
        "d2d_up_down": 0.05,
        "write_noise_std": 0.0,
        "reset": 0.01,
        "d2d_reset": 0.02,
    },
    # ReRamArrayOMPresetDevice(SoftBoundsReferenceDevice): the "optimized material" array
    # of Gong & Rasch (IEDM 2022); measured corrupt share 0.1348, off by default
    "reram_array_om": {
        **_PULSED,
        **_REFERENCE,
        "model": "softbounds_reference",
        "d2d_log_normal": True,
        "dw_min": 0.0949,
        "w_min": -1.0,
        "w_max": 1.0,
        "up_down": 0.0,
        "c2c_noise": 0.4158,
        "c2c_mode": "additive",
        "d2d_variation": 0.7829,
        "d2d_w_min": 0.5695,
        "d2d_w_max": 0.3499,
        "d2d_up_down": 0.01,
        "write_noise_std": 1.4113,
        "corrupt_devices_range": 0.01,
        "corrupt_devices_prob": 0.0,
        "subtract_symmetry_point": True,
        "reference_std": 0.05,
    },
    # ReRamArrayHfO2PresetDevice(SoftBoundsReferenceDevice): the baseline HfO2 array of the
    # same article; measured corrupt share 0.0977, off by default
    "reram_array_hfo2": {
        **_PULSED,
        **_REFERENCE,
        "model": "softbounds_reference",
        "d2d_log_normal": True,
        "dw_min": 0.4622,
        "w_min": -1.0,
        "w_max": 1.0,
        "up_down": 0.0,
        "c2c_noise": 0.2174,
        "c2c_mode": "additive",
        "d2d_variation": 0.7125,
        "d2d_w_min": 0.5990,
        "d2d_w_max": 0.4295,
        "d2d_up_down": 0.01,
        "write_noise_std": 0.5841,
        "corrupt_devices_range": 0.01,
        "corrupt_devices_prob": 0.0,
        "subtract_symmetry_point": True,
        "reference_std": 0.05,
    },
}
