"""Figures of the drivers stage: partial effects (the paper's Figs. 6/7) and the AIC table."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def partial_effects_figure(result, path: str | Path, units: dict[str, str] | None = None,
                           response_units: str = "g C m$^{-2}$ yr$^{-1}$") -> Path:
    """One panel per smooth: effect with its 95% band (effect +/- 1.96 SE), rug of data.

    ``result`` is a :class:`rhcloud.drivers.api.DriversResult`; ``units`` maps covariate
    names to axis units.
    """
    units = units or {}
    eff = result.gamm_effects()
    fit = result.gamm.fit
    terms = list(dict.fromkeys(eff["term"]))
    ncol = min(len(terms), 2) or 1
    nrow = int(np.ceil(len(terms) / ncol)) or 1
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.3 * nrow), squeeze=False)
    ptab = fit.terms.set_index("term")
    for ax, term in zip(axes.ravel(), terms, strict=False):
        e = eff[eff["term"] == term]
        x, f, se = e["x"].to_numpy(), e["effect"].to_numpy(), e["se"].to_numpy()
        ax.fill_between(x, f - 1.96 * se, f + 1.96 * se, color="0.8", lw=0)
        ax.plot(x, f, color="k", lw=1.5)
        ax.axhline(0, color="0.5", lw=0.6, ls=":")
        xd = result.data[term].to_numpy()
        ax.plot(xd, np.full(xd.shape, 0.0), "|", color="k", ms=6, alpha=0.3,
                transform=ax.get_xaxis_transform())
        row = ptab.loc[f"s({term})"]
        ax.set_title(f"s({term}), edf {row.edf:.2f}, p = {row.p_value:.3g}", fontsize=9)
        ax.set_xlabel(f"{term} ({units[term]})" if term in units else term)
        ax.set_ylabel(f"partial effect ({response_units})", fontsize=8)
    for ax in axes.ravel()[len(terms):]:
        ax.set_visible(False)
    fig.suptitle(f"GAMM of the {result.residual_label} residual "
                 f"({fit.structure}{' + nugget' if fit.nugget else ''})", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def aic_table_figure(table: pd.DataFrame, path: str | Path) -> Path:
    """The GLS AIC table as a figure (lowest AIC first, delta-AIC column)."""
    t = table.copy()
    t["dAIC"] = t["aic"] - np.nanmin(t["aic"].to_numpy(dtype=float))
    cols = ["structure", "nugget", "loglik", "aic", "dAIC", "range", "nugget_value"]
    cells = [[_fmt(v) for v in row] for row in t[cols].itertuples(index=False)]
    fig, ax = plt.subplots(figsize=(8, 0.35 * (len(t) + 2)))
    ax.axis("off")
    tab = ax.table(cellText=cells, colLabels=cols, loc="center", cellLoc="right")
    tab.auto_set_font_size(False)
    tab.set_fontsize(8)
    tab.scale(1, 1.2)
    path = Path(path)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return path


def aic_table_html(table: pd.DataFrame) -> str:
    """The GLS AIC table as an HTML fragment (for the report)."""
    t = table.copy()
    t["dAIC"] = t["aic"] - np.nanmin(t["aic"].to_numpy(dtype=float))
    return t.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="n/a",
                     classes="gls-aic")


def _fmt(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)):
        return "n/a" if not np.isfinite(v) else f"{v:.4g}"
    return str(v)


def drivers_figures(results, figdir: str | Path,
                    units: dict[str, str] | None = None) -> list[Path]:
    """Per result (residual): the partial-effect panels (Figs. 6 and 7) and the AIC table,
    as ``gamm_effects_<residual>.png`` and ``gls_aic_<residual>.png`` under ``figdir``."""
    figdir = Path(figdir)
    figdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for r in results:
        if r.gamm is not None:
            paths.append(partial_effects_figure(
                r, figdir / f"gamm_effects_{r.residual_label}.png", units=units))
        paths.append(aic_table_figure(r.gls_aic(), figdir / f"gls_aic_{r.residual_label}.png"))
    return paths
