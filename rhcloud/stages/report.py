"""Report stage: figures and the offline HTML report of a run. It draws what the stages
wrote (fields of ``results``, tables) and computes nothing.

Maps are drawn on lat/lon axes with coastlines contoured from the reference grid's land
fraction (no download at run time). Figures are PNG files under ``figures/`` and are also
embedded in ``report.html`` (base64), so the report opens offline as one file.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

from rhcloud.stages.drivers import DriversOutcome, drivers_figures

FLUX_UNITS = "g C m$^{-2}$ yr$^{-1}$"


def _coast(ax, landfrac: xr.DataArray | None) -> None:
    if landfrac is not None:
        ax.contour(landfrac["lon"], landfrac["lat"], landfrac.values, levels=[0.5],
                   colors="k", linewidths=0.4)


def _map(ax, field: xr.DataArray, title: str, landfrac, *, cmap="viridis", vmin=None,
         vmax=None):
    im = ax.pcolormesh(field["lon"], field["lat"], field.values, cmap=cmap, vmin=vmin,
                       vmax=vmax, shading="nearest")
    _coast(ax, landfrac)
    ax.set_title(title, fontsize=9)
    ax.set_xlim(0, 360)
    ax.set_ylim(-60, 90)
    ax.set_xlabel("longitude (°E)", fontsize=7)
    ax.set_ylabel("latitude (°N)", fontsize=7)
    ax.tick_params(labelsize=6)
    return im


def map_panels(fields: dict[str, xr.DataArray], path: Path, landfrac, *, diverging=False,
               suptitle: str = "", ncols: int = 3) -> Path:
    """One map per field, a shared colour scale (symmetric when ``diverging``)."""
    n = len(fields)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 2.6 * nrows), squeeze=False,
                             constrained_layout=True)
    values = np.concatenate([np.asarray(f.values).ravel() for f in fields.values()])
    values = values[np.isfinite(values)]
    if diverging:
        lim = float(np.percentile(np.abs(values), 98)) if values.size else 1.0
        vmin, vmax, cmap = -lim, lim, "RdBu_r"
    else:
        vmin, vmax, cmap = 0.0, float(np.percentile(values, 99)) if values.size else 1.0, \
            "YlOrBr"
    im = None
    for ax, (title, f) in zip(axes.ravel(), fields.items(), strict=False):
        im = _map(ax, f, title, landfrac, cmap=cmap, vmin=vmin, vmax=vmax)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.8, label=FLUX_UNITS)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def totals_chart(totals: pd.DataFrame, path: Path) -> Path:
    """Global totals per model (member mean, members as dots) with the product range and the
    product median ± MAD band (Pg C yr-1)."""
    rh = totals[totals["variable_id"] == "rh"]
    models = rh[(rh["kind"] == "model") & (rh["member_id"] == "ensemble")].sort_values("name")
    members = rh[(rh["kind"] == "model") & (rh["member_id"] != "ensemble")]
    prods = rh[rh["kind"] == "product"]
    summ = rh[rh["kind"] == "summary"].set_index("name")["total_PgC_yr"]
    fig, ax = plt.subplots(figsize=(9, 4), constrained_layout=True)
    x = np.arange(len(models))
    ax.bar(x, models["total_PgC_yr"], color="#8c6d31", label="model (member mean)")
    for i, name in enumerate(models["name"]):
        m = members[members["name"] == name]["total_PgC_yr"]
        ax.plot(np.full(len(m), i), m, "k.", ms=3)
    if len(prods):
        ax.axhspan(summ["product_min"], summ["product_max"], color="0.85",
                   label="product range", zorder=0)
        ax.axhspan(summ["product_median"] - summ["product_mad"],
                   summ["product_median"] + summ["product_mad"], color="#6baed6", alpha=0.5,
                   label="product median ± MAD", zorder=0)
        ax.axhline(summ["product_median"], color="#08519c", lw=1)
    ax.set_xticks(x, models["name"], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("global Rh (Pg C yr$^{-1}$)")
    ax.legend(fontsize=7, loc="upper left")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def zonal_chart(q: xr.DataArray, products_zonal: xr.DataArray | None, path: Path) -> Path:
    """Zonal means (oceans as zero): the models' median with the 25th–75th percentile
    envelope (``q``: quantile 0.25, 0.5, 0.75 × lat), and each product."""
    fig, ax = plt.subplots(figsize=(5, 4), constrained_layout=True)
    lat = q["lat"]
    ax.fill_betweenx(lat, q.sel(quantile=0.25), q.sel(quantile=0.75), color="#d8b365",
                     alpha=0.6, label="models 25th–75th percentile")
    ax.plot(q.sel(quantile=0.5), lat, color="#8c510a", label="model median")
    if products_zonal is not None:
        for p in products_zonal["product"].values:
            ax.plot(products_zonal.sel(product=p), lat, lw=1, label=str(p))
    ax.set_xlabel(f"zonal mean Rh ({FLUX_UNITS})")
    ax.set_ylabel("latitude (°N)")
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'
            f"<figcaption>{html.escape(path.stem.replace('_', ' '))}</figcaption></figure>")


def _table(df: pd.DataFrame, float_format: str = "{:.3g}") -> str:
    if df is None or df.empty:
        return "<p><em>none</em></p>"
    return df.to_html(index=False, float_format=lambda v: float_format.format(v),
                      border=0, classes="t", na_rep="")


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:1.6em}
table.t{border-collapse:collapse;font-size:.8em}table.t td,table.t th{padding:2px 8px;
border-bottom:1px solid #eee;text-align:right}figure{margin:1em 0}img{max-width:100%}
figcaption{font-size:.8em;color:#555}.note{background:#fff8e1;padding:.5em 1em}"""


def write_html(path: Path, title: str, sections: Iterable[tuple[str, str]]) -> Path:
    """Assemble ``report.html`` from (heading, html) sections; no external resources."""
    body = "".join(f"<h2>{html.escape(h)}</h2>{content}" for h, content in sections)
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>"
                    f"{html.escape(title)}</title><style>{CSS}</style></head><body>"
                    f"<h1>{html.escape(title)}</h1>{body}</body></html>")
    return path


def figure_section(paths: Iterable[Path]) -> str:
    return "".join(_img(p) for p in paths)


def table_section(df: pd.DataFrame, note: str = "") -> str:
    return (f"<p>{html.escape(note)}</p>" if note else "") + _table(df)


def notes_section(lines: Iterable[str]) -> str:
    items = "".join(f"<li>{html.escape(x)}</li>" for x in lines)
    return f"<ul class='note'>{items}</ul>" if items else "<p><em>none</em></p>"


def drivers_sections(drivers: DriversOutcome, figdir: Path) -> list[tuple[str, str]]:
    """Report sections of the drivers stage: AIC table, GAMM terms, the factor decision and
    the partial-effect figures."""
    if not drivers.results:
        return []
    body = figure_section(drivers_figures(drivers, figdir))
    for r in drivers.results:
        note = f"{r.residual_label} residual, n = {r.best.n}: lowest AIC {r.best.structure}"
        if r.gamm is not None:
            note += f"; {r.gamm.decision}"
        body += table_section(r.gamm_terms(), note)
    return [("Drivers of the residual (GLS, GAMM)", body)]


def build_report(out: Path, results: xr.Dataset, tables: dict[str, pd.DataFrame],
                 notes: list[str], drivers: DriversOutcome | None = None) -> Path:
    """Write ``figures/*.png`` and ``report.html`` under ``out``."""
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    land = results["landfrac"] if "landfrac" in results else None
    sections: list[tuple[str, str]] = [("Summary", notes_section(notes))]
    totals = tables.get("global_totals", pd.DataFrame())
    if not totals.empty and "rh" in results:
        figs = [totals_chart(totals, figdir / "global_totals.png")]
        summ = totals[totals["kind"] == "summary"][["name", "total_PgC_yr"]]
        sections.append(("Global totals (Pg C yr-1)", figure_section(figs)
                         + table_section(summ)))
    metrics = tables.get("model_metrics", pd.DataFrame())
    if not metrics.empty:
        ens = metrics[metrics["member_id"] == "ensemble"]
        sections.append(("Table 1: models against the product median", table_section(
            ens.drop(columns=[c for c in ens.columns if c.endswith("_sd")]),
            "Member means per model; every member is in tables/model_metrics.csv. "
            "n_within_mad: land cells within obs median ± MAD; RMSE in g C m-2 yr-1; R²: "
            "squared Pearson correlation over land cells (unweighted).")))
    maps = []
    if "obs_products" in results:
        obs = {str(p): results["obs_products"].sel(product=p)
               for p in results["product"].values}
        obs["median of products"] = results["obs_median"]
        maps.append(map_panels(obs, figdir / "products.png", land,
                               suptitle="Observation-derived Rh products"))
        mad = {"MAD of products": results["obs_mad"]}
        maps.append(map_panels(mad, figdir / "products_mad.png", land, ncols=1))
        if "obs_product_difference" in results:
            diffs = {str(p): results["obs_product_difference"].sel(pair=p)
                     for p in results["pair"].values}
            maps.append(map_panels(diffs, figdir / "product_differences.png", land,
                                   diverging=True, suptitle="Differences between products"))
    if "rh_multi_model_mean" in results:
        maps.append(map_panels({"multi-model mean": results["rh_multi_model_mean"]},
                               figdir / "model_mean.png", land, ncols=1))
    if "residual_member_mean" in results:
        res = results["residual_member_mean"]
        panels = {str(s): res.sel(model=s) for s in res["model"].values}
        maps.append(map_panels(panels, figdir / "model_residuals.png", land, diverging=True,
                               ncols=4, suptitle="Model − product median (member mean)"))
        maps.append(map_panels({"ESM residual (median over models)": results["residual_median"],
                                "ESM residual (mean over models)": results["residual_mean"]},
                               figdir / "esm_residual.png", land, diverging=True, ncols=2))
    if maps:
        sections.append(("Maps", figure_section(maps)))
    if "rh_zonal_quantile" in results:
        pz = results["obs_zonal"] if "obs_zonal" in results else None
        sections.append(("Zonal means (oceans count as zero)", figure_section(
            [zonal_chart(results["rh_zonal_quantile"], pz, figdir / "zonal_means.png")])))
    cons = tables.get("regrid_conservation", pd.DataFrame())
    if not cons.empty:
        worst = cons.loc[cons["rel_error"].abs().idxmax()]
        sections.append(("Regridding conservation", table_section(
            cons, f"Largest relative change of a land total: {worst['rel_error']:.1e} "
                  f"({worst['name']}).")))
    site = tables.get("site_metrics", pd.DataFrame())
    if not site.empty:
        shown = site[site["member_id"].isin(["ensemble", ""])]
        sections.append(("Site-level check against SRDB", table_section(
            shown, "Annual Rh at the Soil Respiration Database records without manipulation "
                   "(Bond-Lamberty & Thomson 2010), against the reference-grid cell holding "
                   "each site: RMSE and bias in g C m-2 yr-1 (model member means and "
                   "products; every member in tables/site_metrics.csv).")))
    sections += drivers_sections(drivers, figdir) if drivers is not None else []
    sections.append(("Excluded datasets", table_section(tables.get("excluded",
                                                                   pd.DataFrame()))))
    return write_html(out / "report.html", "rhcloud: heterotrophic respiration in CMIP6",
                      sections)
