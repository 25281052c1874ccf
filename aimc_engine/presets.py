"""Device presets: published device fits (aihwkit 1.2 presets), as plain data.

Torch-free: the job spec expands a preset into explicit device fields, and the
API process imports this module.
"""

from typing import Any

# model, dw_min, bounds, asymmetry and cycle-to-cycle noise (in units of one step)
# for each preset; analog-model.md section 7.
PRESETS: dict[str, dict[str, Any]] = {
    "reram_es": {
        "model": "exp_step",
        "dw_min": 0.00135,
        "w_min": -1.0,
        "w_max": 1.0,
        "up_down": 0.259,
        "c2c_noise": 5.0,
    },
    "reram_sb": {
        "model": "softbounds",
        "dw_min": 0.002,
        "w_min": -0.75,
        "w_max": 1.25,
        "up_down": 0.0,
        "c2c_noise": 3.75,
    },
    "capacitor": {
        "model": "linear",
        "gamma": 0.05,
        "dw_min": 0.005,
        "w_min": -1.0,
        "w_max": 1.0,
        "up_down": 0.0,
        "c2c_noise": 0.3,
    },
    "ecram": {
        "model": "linear",
        "gamma": 0.115,
        "gamma_down": 0.509,
        "dw_min": 0.002,
        "w_min": -0.83,
        "w_max": 1.17,
        "up_down": 0.0,
        "c2c_noise": 0.3,
    },
    "idealized": {
        "model": "constant_step",
        "dw_min": 2e-4,
        "w_min": -1.0,
        "w_max": 1.0,
        "up_down": 0.0,
        "c2c_noise": 0.3,
    },
    "gokmen_vlasov": {
        "model": "constant_step",
        "dw_min": 0.0016,
        "w_min": -1.0,
        "w_max": 1.0,
        "up_down": 0.0,
        "c2c_noise": 0.3,
    },
}

# Fields a preset determines; setting one of them next to a preset is a conflict.
PRESET_FIELDS = frozenset(
    {"model", "dw_min", "states", "w_min", "w_max", "gamma", "gamma_down", "up_down", "c2c_noise"}
)
