"""The arithmetic formulas of ratio claims (`(B + P - 1) / B`): parsed and evaluated
without eval, so a study file cannot run code."""

from __future__ import annotations

import ast
import math

FORMULA_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Load)
FORMULA_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd)


def formula_names(text: str) -> list[str]:
    """The symbols of an arithmetic formula (+ - * / ** on numbers and names); ValueError
    for anything else, so a study file cannot run code."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"{text!r} is not a formula: {exc.msg}") from None
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.operator | ast.unaryop):
            if not isinstance(node, FORMULA_OPS):
                raise ValueError(f"{text!r}: only + - * / ** are allowed")
        elif not isinstance(node, FORMULA_NODES):
            raise ValueError(f"{text!r}: only numbers, names and + - * / ** are allowed")
        elif isinstance(node, ast.Constant) and not isinstance(node.value, int | float):
            raise ValueError(f"{text!r}: {node.value!r} is not a number")
        elif isinstance(node, ast.Name):
            names.append(node.id)
    return sorted(set(names))


def evaluate_formula(text: str, values: dict[str, float]) -> float:
    """The formula's value with its symbols bound (checked by formula_names first)."""
    formula_names(text)

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            assert isinstance(node.value, int | float)  # formula_names allows numbers only
            return float(node.value)
        if isinstance(node, ast.Name):
            return float(values[node.id])
        if isinstance(node, ast.UnaryOp):
            return -ev(node.operand) if isinstance(node.op, ast.USub) else ev(node.operand)
        assert isinstance(node, ast.BinOp)
        left, right = ev(node.left), ev(node.right)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if isinstance(node.op, ast.Div):
            return left / right if right else math.nan
        return float(left**right)

    return ev(ast.parse(text, mode="eval"))
