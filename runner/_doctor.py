"""`runner doctor`: the local sandbox's guarantees on this host, as a table and as one line.

The rows come from ``sandbox.check_host()`` (small real jobs, a few seconds); ``summary`` is the
line ``runner run`` prints before a run and that results record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from sandbox import HostCheck


def doctor_table(rows: list[HostCheck]) -> Table:
    """The checks as a table: guarantee, whether it holds, and how or why not."""
    table = Table(title="Local sandbox on this host", show_lines=False)
    table.add_column("guarantee")
    table.add_column("holds")
    table.add_column("how / why not")
    for group in ("sandbox", "host"):
        for row in (r for r in rows if r.group == group):
            mark = "[green]yes[/]" if row.holds else ("[red]NO[/]" if group == "sandbox" else "no")
            # details quote host errors and paths: never markup
            table.add_row(escape(row.guarantee), mark, escape(row.detail))
        if group == "sandbox":
            table.add_section()
    return table


def summary(rows: list[HostCheck]) -> str:
    """One line: how many sandbox guarantees hold (naming any that do not), then GPUs,
    Docker and Slurm."""
    sandbox = [r for r in rows if r.group == "sandbox"]
    failing = [r.guarantee for r in sandbox if not r.holds]
    if failing:
        head = (
            f"local sandbox: {len(sandbox) - len(failing)}/{len(sandbox)} guarantees hold; "
            f"NOT: {', '.join(failing)}"
        )
    else:
        head = f"local sandbox: all {len(sandbox)} guarantees hold"
    if sandbox and not any(r.measured for r in sandbox[1:]):
        head += " as configured (runner doctor measures them)"
    host = {r.guarantee: r for r in rows if r.group == "host"}
    extras = []
    for name, label in (("GPU access", "GPUs"), ("Docker", "Docker"), ("Slurm", "Slurm")):
        if name in host:
            extras.append(f"{label}: {'yes' if host[name].holds else 'no'}")
    return head + (f"; {', '.join(extras)}" if extras else "")
