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


def _save(fig, path: Path, dpi: int) -> Path:
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


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
    return _save(fig, path, 110)


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
    return _save(fig, path, 110)


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
    return _save(fig, path, 110)


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
nav.toc{background:#f6f6f6;padding:.5em 1em;font-size:.85em}nav.toc ul{margin:.2em 0}
table.t th{cursor:pointer}table.t th:hover{background:#eef}h3{font-size:1.05em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:1.6em}
table.t{border-collapse:collapse;font-size:.8em}table.t td,table.t th{padding:2px 8px;
border-bottom:1px solid #eee;text-align:right}figure{margin:1em 0}img{max-width:100%}
figcaption{font-size:.8em;color:#555}.note{background:#fff8e1;padding:.5em 1em}"""


SORT_JS = """document.querySelectorAll('table.t').forEach(function(t){
t.querySelectorAll('th').forEach(function(th,i){th.title='click to sort';
th.addEventListener('click',function(){var b=t.tBodies[0],r=Array.from(b.rows),
d=th.dataset.dir==='a'?-1:1;th.dataset.dir=d>0?'a':'d';r.sort(function(x,y){
var p=x.cells[i].textContent.trim(),q=y.cells[i].textContent.trim(),
u=parseFloat(p),v=parseFloat(q);if(!isNaN(u)&&!isNaN(v))return d*(u-v);
return d*p.localeCompare(q);});r.forEach(function(e){b.appendChild(e);});});});});"""
"""Click a header of any table to sort by that column (numbers numerically); inline, offline."""


def _anchor(heading: str, parent: str = "") -> str:
    """``s-<heading>``, or ``<parent>--<heading>`` for a subsection (lower case, dashes)."""
    slug = "".join(c if c.isalnum() else "-" for c in heading.lower()).strip("-")
    return f"{parent}--{slug}" if parent else f"s-{slug}"


Section = tuple[str, str] | tuple[str, str, list[tuple[str, str]]]
"""(heading, html) or (heading, html, subsections of (heading, html))."""


def write_html(path: Path, title: str, sections: Iterable[Section]) -> Path:
    """Assemble ``report.html`` from sections (a heading, its html and optional
    subsections), with a table of contents and sortable tables; no external resources."""
    toc, body = [], []
    for heading, content, *rest in sections:
        subs = rest[0] if rest else []
        a = _anchor(heading)
        items = "".join(f"<li><a href='#{_anchor(h, a)}'>{html.escape(h)}</a></li>"
                        for h, _ in subs)
        toc.append(f"<li><a href='#{a}'>{html.escape(heading)}</a>"
                   + (f"<ul>{items}</ul>" if items else "") + "</li>")
        body.append(f"<h2 id='{a}'>{html.escape(heading)}</h2>{content}")
        body += [f"<h3 id='{_anchor(h, a)}'>{html.escape(h)}</h3>{c}" for h, c in subs]
    nav = f"<nav class='toc'><strong>Contents</strong><ul>{''.join(toc)}</ul></nav>"
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>"
                    f"{html.escape(title)}</title><style>{CSS}</style></head><body>"
                    f"<h1>{html.escape(title)}</h1>{nav}{''.join(body)}"
                    f"<script>{SORT_JS}</script></body></html>")
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


def bias_heatmap(metrics: pd.DataFrame, path: Path) -> Path:
    """Models × regions of the regional bias (member means; g C m-2 yr-1), one panel per
    region set, regions in the table's order."""
    ens = metrics[metrics["member_id"] == "ensemble"]
    sets = [s for s in ("band", "ar6", "global") if s in set(ens["region_set"])]
    widths = [max(ens[ens["region_set"] == s]["region"].nunique(), 1) for s in sets]
    models = sorted(ens["source_id"].unique())
    fig, axes = plt.subplots(1, len(sets), figsize=(3 + 0.28 * sum(widths), 0.9 + 0.3 * len(
        models)), gridspec_kw={"width_ratios": widths}, squeeze=False, constrained_layout=True)
    lim = float(np.nanpercentile(np.abs(ens["bias"]), 98)) if len(ens) else 1.0
    im = None
    for ax, rset in zip(axes[0], sets, strict=True):
        sub = ens[ens["region_set"] == rset]
        order = list(dict.fromkeys(sub["region"]))
        grid = sub.pivot(index="source_id", columns="region", values="bias") \
            .reindex(index=models, columns=order)
        im = ax.imshow(grid.values, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xticks(range(len(order)), order, rotation=90, fontsize=6)
        ax.set_yticks(range(len(models)), models if ax is axes[0][0] else [], fontsize=7)
        ax.set_title({"band": "latitude bands", "ar6": "AR6 land regions",
                      "global": "global"}[rset], fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.8, label=f"bias ({FLUX_UNITS})")
    return _save(fig, path, 100)


def response_chart(responses: pd.DataFrame, covariate: str, path: Path) -> Path:
    """Rh (left) and model − obs median (right) binned by ``covariate``: every model's
    member-mean curve over the products' band (min–max across products), the product
    median, and the ESM residual."""
    r = responses[responses["covariate"] == covariate]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, variable in zip(axes, ("rh", "residual"), strict=True):
        v = r[r["variable"] == variable]
        lo = v[(v["kind"] == "summary") & (v["name"] == "product_min")]
        hi = v[(v["kind"] == "summary") & (v["name"] == "product_max")]
        if len(lo):
            ax.fill_between(lo["x_mean"], lo["mean"], hi["mean"], color="0.8",
                            label="products (min–max)")
        med = v[(v["kind"] == "product") & (v["name"] == "median")]
        ax.plot(med["x_mean"], med["mean"], "k-", lw=2, label="product median")
        models = v[(v["kind"] == "model") & (v["member_id"] == "ensemble")]
        for name, g in models.groupby("name"):
            ax.plot(g["x_mean"], g["mean"], lw=0.9, marker=".", ms=3, label=str(name))
        esm = v[(v["kind"] == "summary") & (v["name"] == "residual_median")]
        if len(esm):
            ax.plot(esm["x_mean"], esm["mean"], "r--", lw=2, label="ESM residual (median)")
        ax.set_xlabel(f"{covariate} (bin mean)")
        ax.set_ylabel(("Rh" if variable == "rh" else "model − product median")
                      + f" ({FLUX_UNITS})")
    axes[1].legend(fontsize=6, ncol=2, loc="best")
    fig.suptitle(f"Functional response to {covariate}", fontsize=10)
    return _save(fig, path, 100)


def portrait_plot(scores: pd.DataFrame, path: Path, members: bool = False) -> Path:
    """Datasets × scores (0..1): the models' member means, and every member when asked."""
    rows = scores if members else scores[scores["member_id"] == "ensemble"]
    rows = rows.sort_values(["source_id", "member_id"])
    cols = [c for c in rows.columns if c.startswith("score_")]
    labels = [s if m == "ensemble" else f"{s} {m}"
              for s, m in zip(rows["source_id"], rows["member_id"], strict=True)]
    fig, ax = plt.subplots(figsize=(2.5 + 0.8 * len(cols), 1 + 0.28 * len(rows)),
                           constrained_layout=True)
    im = ax.imshow(rows[cols].to_numpy(float), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for (i, j), v in np.ndenumerate(rows[cols].to_numpy(float)):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                    color="w" if v < 0.5 else "k")
    ax.set_xticks(range(len(cols)), [c.removeprefix("score_") for c in cols], rotation=45,
                  ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    fig.colorbar(im, ax=ax, label="score (1 best)")
    return _save(fig, path, 100)


MARKERS = ("o", "s", "D", "^", "v")


def taylor_diagram(scores: pd.DataFrame, path: Path) -> Path:
    """Taylor (2001) diagram of the models' member means against the product median:
    normalised standard deviation (radius) and correlation (angle)."""
    ens = scores[scores["member_id"] == "ensemble"]
    fig = plt.figure(figsize=(6, 5), constrained_layout=True)
    ax = fig.add_subplot(projection="polar")
    ax.set_thetamin(0)
    ax.set_thetamax(90)
    rmax = max(1.6, float(np.nanmax(ens["std_ratio"])) * 1.1) if len(ens) else 1.6
    ax.set_rlim(0, rmax)
    ticks = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99, 1.0])
    ax.set_thetagrids(np.degrees(np.arccos(ticks)), [f"{t:g}" for t in ticks], fontsize=7)
    ax.plot([0], [1], "k*", ms=12, label="product median")
    for i, (name, s, r) in enumerate(zip(ens["source_id"], ens["std_ratio"],
                                         ens["correlation"], strict=True)):
        ax.plot(np.arccos(r), s, MARKERS[(i // 10) % len(MARKERS)], color=f"C{i % 10}", ms=5,
                label=str(name))
    fig.text(0.3, 0.02, "radius: standard deviation / the product median's", fontsize=8)
    ax.set_title("Taylor diagram (angle: correlation)", fontsize=9)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path, 100)


def regional_bars(regional: pd.DataFrame, model: str, path: Path) -> Path:
    """One model's regional totals (member mean, Pg C yr-1) beside the products' median
    with their min–max, per latitude band and AR6 region."""
    rows = regional[regional["region_set"].isin(["band", "ar6"])]
    mod = rows[(rows["kind"] == "model") & (rows["name"] == model)
               & (rows["member_id"] == "ensemble")]
    summ = rows[rows["kind"] == "summary"]
    order = list(dict.fromkeys(mod["region"]))

    def of(name):
        return summ[summ["name"] == name].set_index("region")["total_PgC_yr"] \
            .reindex(order).to_numpy()

    med, lo, hi = of("product_median"), of("product_min"), of("product_max")
    x = np.arange(len(order))
    fig, ax = plt.subplots(figsize=(max(6, 0.22 * len(order)), 3.2), constrained_layout=True)
    ax.bar(x - 0.2, mod.set_index("region")["total_PgC_yr"].reindex(order), 0.4,
           color="#8c6d31", label=f"{model} (member mean)")
    ax.bar(x + 0.2, med, 0.4, color="#6baed6", label="product median",
           yerr=np.vstack([med - lo, hi - med]), error_kw={"lw": 0.6})
    ax.set_xticks(x, order, rotation=90, fontsize=6)
    ax.set_ylabel("Rh (Pg C yr$^{-1}$)")
    ax.legend(fontsize=7)
    return _save(fig, path, 100)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def model_sections(results: xr.Dataset, tables: dict[str, pd.DataFrame], figdir: Path,
                   land) -> list[tuple[str, str]]:
    """One subsection per model: its member-mean map and residual, its totals, scores and
    regional bars."""
    if "rh_member_mean" not in results:
        return []
    totals = tables.get("global_totals", pd.DataFrame())
    scores = tables.get("scores", pd.DataFrame())
    regional = tables.get("regional_totals", pd.DataFrame())
    metrics = tables.get("model_metrics", pd.DataFrame())
    out = []
    for model in results["rh_member_mean"]["model"].values:
        model = str(model)
        panels = {f"{model}: Rh (member mean)": results["rh_member_mean"].sel(model=model)}
        figs = [map_panels(panels, figdir / f"model_{_slug(model)}.png", land, ncols=1)]
        if "residual_member_mean" in results:
            figs.append(map_panels(
                {f"{model} − product median": results["residual_member_mean"].sel(model=model)},
                figdir / f"model_{_slug(model)}_residual.png", land, diverging=True, ncols=1))
        if not regional.empty:
            figs.append(regional_bars(regional, model, figdir / f"regions_{_slug(model)}.png"))
        body = figure_section(figs)
        if not totals.empty:
            body += table_section(totals[(totals["kind"] == "model") & (totals["name"] == model)],
                                  "Global land totals (Pg C yr-1), every member and the "
                                  "member mean.")
        if not metrics.empty:
            body += table_section(metrics[metrics["source_id"] == model].dropna(
                axis=1, how="all"), "Table 1 rows of this model.")
        if not scores.empty:
            body += table_section(scores[scores["source_id"] == model],
                                  "Scores (0..1, 1 best; docs/methods.md).")
        out.append((model, body))
    return out


def build_report(out: Path, results: xr.Dataset, tables: dict[str, pd.DataFrame],
                 notes: list[str], drivers: DriversOutcome | None = None,
                 portrait_members: bool = False) -> Path:
    """Write ``figures/*.png`` and ``report.html`` under ``out``."""
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    land = results["landfrac"] if "landfrac" in results else None
    sections: list[Section] = [("Summary", notes_section(notes))]
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
    scores = tables.get("scores", pd.DataFrame())
    if not scores.empty:
        figs = [portrait_plot(scores, figdir / "scores_portrait.png", portrait_members),
                taylor_diagram(scores, figdir / "taylor_diagram.png")]
        ranked = scores[scores["member_id"] == "ensemble"].sort_values("rank")
        sections.append(("Scores", figure_section(figs) + table_section(
            ranked, "Per model (its member-mean field); every member in tables/scores.csv. "
                    "Each statistic mapped to 0..1 (1 best) and the weighted overall score "
                    "(docs/methods.md, Scores).")))
    rmetrics = tables.get("regional_metrics", pd.DataFrame())
    if not rmetrics.empty:
        regional = tables["regional_totals"]
        shown = regional[regional["kind"] == "summary"].pivot(
            index=["region_set", "region"], columns="name", values="total_PgC_yr").reset_index()
        sections.append(("Regions", figure_section(
            [bias_heatmap(rmetrics, figdir / "regional_bias.png")]) + table_section(
            shown, "Regional land totals (Pg C yr-1) on the reference grid: AR6 land regions "
                   "(with the remainder of land outside them), latitude bands and the globe; "
                   "every dataset in tables/regional_totals.csv, Table 1 per region in "
                   "tables/regional_metrics.csv.")))
    responses = tables.get("responses", pd.DataFrame())
    if not responses.empty:
        figs = [response_chart(responses, c, figdir / f"response_{_slug(c)}.png")
                for c in dict.fromkeys(responses["covariate"])]
        sections.append(("Functional responses", figure_section(figs) + "<p>Rh and the "
                         "residual binned by each covariate (bins from the quantiles of the "
                         "covariate over the observed cells); tables/responses.csv.</p>"))
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
    per_model = model_sections(results, tables, figdir, land)
    if per_model:
        sections.append(("Models", "<p>One section per model.</p>", per_model))
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
