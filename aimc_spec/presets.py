"""Device presets: aihwkit's published device fits (simulator/presets/devices.py), as data.

Torch-free: the job spec expands a preset into explicit device fields, and the
API process imports this module. Each entry names the aihwkit class it mirrors;
the field mapping (ours = aihwkit's) is: dw_min = dw_min, c2c_noise = dw_min_std
(c2c_mode = the class's noise form), d2d_variation = dw_min_dtod, d2d_w_min /
d2d_w_max = w_min_dtod / w_max_dtod, d2d_up_down = up_down_dtod, d2d_gamma =
gamma_up_dtod = gamma_down_dtod, write_noise_std = write_noise_std (analog-model.md
section 7). Not modelled: the capacitor's leakage (lifetime 1e6, lifetime_dtod 0.3).
"""

from typing import Any

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
}
