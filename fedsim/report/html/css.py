"""The report's style sheet, inlined into its ``<style>`` (the report is one self-contained file)."""

from __future__ import annotations

__all__ = ["CSS"]

CSS = """
:root { --fail: #fde2e1; --fail-edge: #c0392b; --ok: #1e8449; --muted: #666; --line: #ddd; --warn: #fff1c2;
         --warn-edge: #d99a00; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0;
       color: #222; background: #f6f7f9; }
header { background: #1f3a5f; color: white; padding: 14px 28px; position: sticky; top: 0; z-index: 1; }
header h1 { font-size: 19px; margin: 0 0 6px 0; font-weight: 600; }
nav a { color: #cfe0f5; margin-right: 16px; text-decoration: none; font-size: 13px; }
nav a:hover { color: white; text-decoration: underline; }
main { padding: 8px 28px 28px 28px; max-width: 1600px; }
section { background: white; border: 1px solid var(--line); border-radius: 6px; padding: 6px 20px 18px 20px;
          margin: 18px 0; }
h2 { font-size: 17px; border-bottom: 2px solid #1f3a5f; padding-bottom: 4px; }
h3 { font-size: 14px; margin: 18px 0 6px 0; }
table { border-collapse: collapse; margin: 6px 0 10px 0; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 3px 9px; text-align: left; vertical-align: top; }
th { background: #eef1f5; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.failed td { background: var(--fail); }
tr.failed td:first-child { border-left: 4px solid var(--fail-edge); }
.status-ok { color: var(--ok); font-weight: 600; }
.status-bad { color: var(--fail-edge); font-weight: 700; }
.muted { color: var(--muted); }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 10px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 130px; background: #fbfcfd; }
.card .v { font-size: 20px; font-weight: 600; }
.card .k { font-size: 12px; color: var(--muted); }
.card.bad { background: var(--fail); border-color: var(--fail-edge); }
.card.warn { background: var(--warn); border-color: var(--warn-edge); }
.flag { display: inline-block; background: var(--warn); color: #7a4d00; border: 1px solid var(--warn-edge);
        border-radius: 3px; padding: 0 5px; margin-left: 6px; font-size: 12px; font-weight: 600; white-space: nowrap; }
tr.flagged td { background: #fffaf0; }
tr.flagged td:first-child { border-left: 4px solid var(--warn-edge); }
figure { margin: 10px 0 16px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 12px; color: var(--muted); }
pre { background: #1e1e1e; color: #e6e6e6; padding: 8px 10px; overflow-x: auto; font-size: 12px;
      max-height: 460px; border-radius: 4px; white-space: pre-wrap; word-break: break-all; }
pre.yaml { background: #f4f4f4; color: #222; }
details { margin: 4px 0; }
summary { cursor: pointer; }
.failure { border-left: 4px solid var(--fail-edge); padding: 2px 0 2px 12px; margin: 12px 0; }
.bar { display: inline-block; height: 10px; background: #3b6ea8; vertical-align: middle; margin-right: 6px; }
"""
