"""Write the file view's protocol schema (labextension/src/edits.schema.json) from
jupyter_flow/protocol.py, then the TypeScript types generated from it (labextension/src/edits.ts).

Run after changing jupyter_flow/protocol.py, edits.py or replies.py, from the repository root, with the project's
Python and after `jlpm install` in labextension/:

    python scripts/edit_types.py

tests/test_edits.py fails while either file is out of date.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from jupyter_flow.protocol import schema_text

LABEXTENSION = Path(__file__).resolve().parent.parent / "labextension"
SCHEMA = LABEXTENSION / "src" / "edits.schema.json"


def main() -> None:
    SCHEMA.write_bytes(schema_text().encode("utf-8"))
    subprocess.run(["node", "scripts/edit-types.mjs"], cwd=LABEXTENSION, check=True)
    print(f"wrote {SCHEMA.relative_to(LABEXTENSION.parent)} and labextension/src/edits.ts")


if __name__ == "__main__":
    main()
