"""What an import made of a Dify app: the flow, the files to write beside it, and the report
of what mapped to what, what was approximated and what still needs a binding or a key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from jupyter_flow.errors import Problem
from jupyter_flow.spec import FlowSpec, dump_spec

__all__ = ["DifyImport", "Mapped"]


@dataclass(frozen=True)
class Mapped:
    """One Dify node and the flow nodes (or declared outputs) it became."""

    dify_id: str
    dify_type: str
    title: str
    became: str


@dataclass
class DifyImport:
    """A converted Dify app: the flow, the code modules to write beside it, the ids that
    were renamed, what did not come over, and the report's parts."""

    spec: FlowSpec
    modules: dict[str, str] = field(default_factory=dict)
    #: flow files to write beside the flow (the insides of iterations), by file name
    flows: dict[str, str] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)
    unsupported: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    mapped: list[Mapped] = field(default_factory=list)
    approximated: list[str] = field(default_factory=list)
    bindings: list[str] = field(default_factory=list)
    #: environment variables the flow reads at run time, with what each is for
    keys: dict[str, str] = field(default_factory=dict)
    #: the text of the app's sticky notes, kept as comments in the flow file
    sticky_notes: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    overwritten: list[Path] = field(default_factory=list)
    app_name: str = ""

    def code_notice(self, folder: Path) -> str | None:
        """What to tell the user when the app's code nodes became Python modules (written
        to `folder`): they run with the user's rights when the flow runs (importing and
        validating it run none of them); None when the app has no code nodes."""
        if not self.modules:
            return None
        files = ", ".join(str(folder / f"{module}.py") for module in self.modules)
        became = "code node became" if len(self.modules) == 1 else "code nodes became"
        return f"{len(self.modules)} {became} Python that runs with your rights: review {files}"

    def text(self) -> str:
        """The flow file, opening with how Dify's ids were renamed and the app's sticky notes."""
        head = "".join(f"# Dify node {old!r} -> {new}\n" for old, new in self.renamed.items())
        for note in self.sticky_notes:
            lines = note.splitlines() or [""]
            head += "# Note on the Dify canvas:\n" + "".join(f"#   {line}".rstrip() + "\n" for line in lines)
        return (f"# Imported from a Dify app.\n{head}" if head else "") + dump_spec(self.spec)

    def report(self) -> str:
        """What the import did, for a person: each Dify node and what it became, what was
        approximated, what needs a tool binding or an environment variable, the nodes left as
        placeholders, and the files written."""
        out = [f"Imported the Dify app {self.app_name!r}: {len(self.mapped)} nodes, {len(self.spec.nodes)} flow nodes"]
        if self.mapped:
            out.append("Mapped:")
            out += [f"  {m.dify_type} {m.dify_id!r}{f' ({m.title})' if m.title else ''} -> {m.became}" for m in self.mapped]
        sections = [("Approximated (behaves close to Dify, not the same):", self.approximated),
                    ("Needs a tool binding:", self.bindings),
                    ("Needs an environment variable at run time:", [f"{k}: {v}" for k, v in self.keys.items()]),
                    ("Placeholders (the flow does not run until they are replaced):", [str(p) for p in self.unsupported]),
                    ("Notes:", self.notes)]
        for title, lines in sections:
            if lines:
                out.append(title)
                out += [f"  {line}" for line in lines]
        if self.written:
            out.append("Files written:")
            out += [f"  {path}{' (replaced the file that was there)' if path in self.overwritten else ''}" for path in self.written]
        return "\n".join(out)
